import * as http from "node:http";
import type { AddressInfo } from "node:net";

/** A local webhook receiver on a free loopback port that records every JSON body it gets, with when. */
export async function webhookReceiver() {
  const received: any[] = [];
  const at: number[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      received.push(JSON.parse(body));
      at.push(Date.now());
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received, at, close: () => server.close() };
}
