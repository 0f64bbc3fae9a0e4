import * as crypto from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";

/** One request the server answered or is holding. */
export interface TransitRequest {
  op: "encrypt" | "decrypt";
  key: string;
}

/**
 * A HashiCorp Vault transit engine, as much of it as a Pulumi `hashivault://` secrets provider uses
 * (`PUT /v1/transit/encrypt/<key>` and `/v1/transit/decrypt/<key>`, token in `X-Vault-Token`), started
 * by a test on a free loopback port. Vault itself is not packaged for this machine; this answers the
 * same requests with real AES-256-GCM, so Pulumi's own Vault client runs end to end.
 */
export interface VaultTransit {
  /** `http://127.0.0.1:PORT`, for `VAULT_ADDR`. */
  address: string;
  token: string;
  /** Every request answered so far, in order. */
  requests: TransitRequest[];
  /**
   * Runs before each request is answered, while the client (Pulumi's CLI) waits for the answer: a test
   * looks at the machine at that moment.
   */
  beforeAnswer?: (request: TransitRequest) => Promise<void> | void;
  close(): Promise<void>;
}

export async function startVaultTransit(): Promise<VaultTransit> {
  const token = crypto.randomBytes(16).toString("hex");
  const keys = new Map<string, Buffer>();
  const requests: TransitRequest[] = [];
  const reply = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  };
  const answer = async (req: http.IncomingMessage, text: string, res: http.ServerResponse) => {
    const m = /^\/v1\/transit\/(encrypt|decrypt)\/(.+)$/.exec(req.url ?? "");
    if (!m || (req.method !== "PUT" && req.method !== "POST")) return reply(res, 404, { errors: [`no handler for ${req.method} ${req.url}`] });
    if (req.headers["x-vault-token"] !== token) return reply(res, 403, { errors: ["permission denied"] });
    const op = m[1] as TransitRequest["op"];
    const key = decodeURIComponent(m[2]);
    await transit.beforeAnswer?.({ op, key });
    requests.push({ op, key });
    if (!keys.has(key)) keys.set(key, crypto.randomBytes(32));
    const aes = keys.get(key)!;
    const body = JSON.parse(text || "{}") as { plaintext?: string; ciphertext?: string };
    if (op === "encrypt") {
      const iv = crypto.randomBytes(12);
      const cipher = crypto.createCipheriv("aes-256-gcm", aes, iv);
      const ct = Buffer.concat([cipher.update(Buffer.from(body.plaintext ?? "", "base64")), cipher.final()]);
      return reply(res, 200, { data: { ciphertext: `vault:v1:${Buffer.concat([iv, cipher.getAuthTag(), ct]).toString("base64")}` } });
    }
    try {
      const raw = Buffer.from(String(body.ciphertext).replace(/^vault:v1:/, ""), "base64");
      const decipher = crypto.createDecipheriv("aes-256-gcm", aes, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      const pt = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]);
      return reply(res, 200, { data: { plaintext: pt.toString("base64") } });
    } catch {
      return reply(res, 400, { errors: ["cipher: message authentication failed"] });
    }
  };
  const server = http.createServer((req, res) => {
    let text = "";
    req.on("data", (d) => (text += d));
    // A throwing beforeAnswer or an unreadable body answers 500, as Vault does, instead of an unhandled rejection and a hung request.
    req.on("end", () => {
      answer(req, text, res).catch((e: unknown) => reply(res, 500, { errors: [e instanceof Error ? e.message : String(e)] }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const transit: VaultTransit = {
    address: `http://127.0.0.1:${port}`,
    token,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return transit;
}
