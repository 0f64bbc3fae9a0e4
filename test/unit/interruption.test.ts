import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as os from "node:os";
import { Holder, judgeLock, livenessOf, nodeCommand, pulumiCommand, thisPlace } from "../../lib/engine/interruption";

describe("judging whether a lock's holder is gone", () => {
  const here = os.hostname();
  const longAgo = new Date(Date.now() - 3_600_000).toISOString();

  it("a running holder of the expected program is alive", () => {
    const l = livenessOf({ pid: process.pid, ...thisPlace(), since: new Date().toISOString() }, nodeCommand);
    assert.equal(l.state, "alive", l.detail);
  });

  it("a pid that no longer exists is dead", () => {
    const child = spawnSync(process.execPath, ["-e", "0"]);
    const l = livenessOf({ pid: child.pid as number, ...thisPlace(), since: longAgo }, pulumiCommand);
    assert.equal(l.state, "dead", l.detail);
  });

  it("a pid reused by a process started after the lock was taken is dead", () => {
    const l = livenessOf({ pid: process.pid, ...thisPlace(), since: longAgo }, nodeCommand);
    assert.equal(l.state, "dead", l.detail);
    assert.match(l.detail, /started .* after/);
  });

  it("a pid now running another program than the holder's is dead", () => {
    const l = livenessOf({ pid: process.pid, ...thisPlace(), since: new Date().toISOString() }, pulumiCommand);
    assert.equal(l.state, "dead", l.detail);
  });

  it("a holder that recorded its hostname only (as Pulumi's lock does) cannot be judged by this machine's pids", () => {
    const child = spawnSync(process.execPath, ["-e", "0"]);
    const l = livenessOf({ pid: child.pid as number, hostname: here, since: longAgo }, pulumiCommand);
    assert.equal(l.state, "unknown", l.detail);
  });

  it("a holder on another host cannot be judged from here", () => {
    const l = livenessOf({ pid: 1, hostname: `not-${here}`, since: longAgo }, pulumiCommand);
    assert.equal(l.state, "unknown", l.detail);
  });
});

describe("judging a Pulumi lock by the in-flight mark of the operation that took it", () => {
  const t = Date.parse("2026-12-06T03:00:00.000Z");
  const at = (ms: number) => new Date(t + ms).toISOString();
  const elsewhere = { hostname: "pod-fleet-7", bootId: "b", pidNs: "pid:[1]" };
  const mark = (over: Partial<Holder> = {}): Holder => ({ pid: 80, ...elsewhere, since: at(0), renewedAt: at(10_000), ttlMs: 60_000, ...over });
  const lock = (over: Partial<Holder> = {}): Holder => ({ pid: 81, hostname: "pod-fleet-7", since: at(300), ...over });

  it("a lock taken after a mark from another host holds while that mark's lease is fresh, and is gone once it lapsed", () => {
    const fresh = judgeLock(lock(), mark(), t + 30_000);
    assert.equal(fresh.state, "alive", fresh.detail);
    assert.equal((fresh as { expiresAt?: string }).expiresAt, at(70_000));
    const lapsed = judgeLock(lock(), mark(), t + 71_000);
    assert.equal(lapsed.state, "dead", lapsed.detail);
    assert.match(lapsed.detail, /lease expired at 2026-12-06T03:01:10.000Z/);
  });

  it("a lock older than the mark, or from another host than the mark's, is not the mark's operation: it cannot be judged", () => {
    for (const l of [lock({ since: at(-60_000) }), lock({ hostname: "pod-fleet-8" })]) {
      const j = judgeLock(l, mark(), t + 600_000);
      assert.equal(j.state, "unknown", j.detail);
      assert.match(j.detail, /no stackpin operation on the stack took it/);
    }
    assert.equal(judgeLock(lock(), undefined, t + 600_000).state, "unknown");
  });

  it("on this machine, a lock of the mark's operation is judged by the lock's own pid", () => {
    const child = spawnSync(process.execPath, ["-e", "0"]);
    const now = Date.now();
    const mine = { pid: process.pid, ...thisPlace(), since: new Date(now - 1_000).toISOString(), renewedAt: new Date(now).toISOString(), ttlMs: 60_000 };
    const j = judgeLock({ pid: child.pid as number, hostname: os.hostname(), since: new Date(now).toISOString() }, mine, now);
    assert.equal(j.state, "dead", j.detail);
  });
});
