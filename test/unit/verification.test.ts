import { strict as assert } from "node:assert";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { verifyRelease } from "../../lib/verify/verification";
import { verifyFileSchema } from "./verify-settings";

/** A real HTTP server on loopback whose /health fails `failures` times before answering `version`. */
async function service(failures: number, version: string): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    if (req.url !== "/health") return res.writeHead(404).end();
    hits += 1;
    if (hits <= failures) return res.writeHead(503, { "content-type": "application/json" }).end('{"status":"starting"}');
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ok", version }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, hits: () => hits, close: () => new Promise((r) => server.close(() => r())) };
}

describe("verification", () => {
  it("retries the health check with backoff until it passes", async () => {
    const svc = await service(2, "v41");
    const started = Date.now();
    const r = await verifyRelease(svc.url, "v41", verifyFileSchema({ health: { retries: 3, intervalMs: 50, backoff: 2 } }));
    await svc.close();
    assert.equal(r.passed, true);
    assert.equal(r.checks[0].attempts, 3);
    assert.ok(Date.now() - started >= 50 + 100, "waited 50 ms, then 100 ms");
  });

  it("fails after the configured retries, with the last answer as the reason", async () => {
    const svc = await service(10, "v41");
    const r = await verifyRelease(svc.url, "v41", verifyFileSchema({ health: { retries: 2, intervalMs: 10 } }));
    await svc.close();
    assert.equal(r.passed, false);
    assert.equal(svc.hits(), 3);
    assert.match(r.reason ?? "", /answered 503/);
  });

  it("fails when /health reports another version than the one applied", async () => {
    const svc = await service(0, "v40");
    const r = await verifyRelease(svc.url, "v41", verifyFileSchema({ health: { retries: 0 } }));
    await svc.close();
    assert.match(r.reason ?? "", /reports version "v40", expected v41/);
  });

  it("runs smoke commands with ENDPOINT set, and stops at the first failure", async () => {
    const svc = await service(0, "v41");
    const r = await verifyRelease(
      svc.url,
      "v41",
      verifyFileSchema({
        smoke: [
          { name: "endpoint is passed", run: 'test -n "$ENDPOINT" && echo "$ENDPOINT"' },
          { name: "fails", run: "echo broken >&2; exit 3" },
          { name: "never runs", run: "true" },
        ],
      }),
    );
    await svc.close();
    assert.deepEqual(r.checks.map((c) => [c.name, c.passed]), [
      ["health and live version", true],
      ["smoke: endpoint is passed", true],
      ["smoke: fails", false],
    ]);
    assert.equal(r.checks[1].detail, svc.url);
    assert.equal(r.reason, "smoke: fails: broken");
  });
});
