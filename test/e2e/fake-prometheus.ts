import * as http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local server speaking Prometheus' instant-query API on a free loopback port; the test sets what each
 * query returns by changing `values`, and closes it when done.
 */
export async function fakePrometheus(values: Record<string, number>): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const query = new URL(req.url ?? "/", "http://x").searchParams.get("query") ?? "";
    const value = values[query];
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        status: "success",
        data: { resultType: "vector", result: value === undefined ? [] : [{ metric: { job: "shop" }, value: [Date.now() / 1000, String(value)] }] },
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}
