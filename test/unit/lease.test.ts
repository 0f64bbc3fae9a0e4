import { strict as assert } from "node:assert";
import { judgeHolder, LeaseHolder, LocalFacts, samePlace } from "../../lib/engine/lease";

const t0 = Date.parse("2026-12-06T03:00:00.000Z");
const here = (over: Partial<LocalFacts> = {}): LocalFacts => ({
  hostname: "ci-1",
  bootId: "boot-a",
  pidNs: "4026531836",
  now: t0 + 10_000,
  processState: () => ({ state: "dead" }),
  ...over,
});
const holder = (over: Partial<LeaseHolder> = {}): LeaseHolder => ({
  pid: 4242,
  hostname: "ci-1",
  bootId: "boot-a",
  pidNs: "4026531836",
  since: new Date(t0).toISOString(),
  renewedAt: new Date(t0 + 5_000).toISOString(),
  ttlMs: 30_000,
  ...over,
});

describe("leases: when the holder of a mark or lock is gone", () => {
  it("a holder on this machine whose process has exited is gone, its lease fresh or not", () => {
    assert.equal(judgeHolder(holder(), here()).state, "gone");
    assert.match(judgeHolder(holder(), here()).detail, /this machine, its process has exited/);
  });

  it("a holder on this machine whose process runs holds, saying until when", () => {
    const j = judgeHolder(holder(), here({ processState: () => ({ state: "alive" }) }));
    assert.deepEqual([j.state, (j as { expiresAt?: string }).expiresAt], ["held", "2026-12-06T03:00:35.000Z"]);
  });

  it("a fresh lease from another host is never judged gone, and says the time left", () => {
    const j = judgeHolder(holder({ hostname: "pod-fleet-7" }), here());
    assert.equal(j.state, "held");
    assert.match(j.detail, /holds a lease until 2026-12-06T03:00:35.000Z \(25 s left\)/);
  });

  it("the same hostname in another pid namespace (host networking) is not this machine: its fresh lease holds", () => {
    assert.equal(samePlace(holder({ pidNs: "4026532999" }), here()), false);
    assert.equal(judgeHolder(holder({ pidNs: "4026532999" }), here()).state, "held");
  });

  it("an expired lease is gone elsewhere; on its own machine a live process still holds, saying it stopped renewing", () => {
    const late = here({ now: t0 + 36_000, processState: () => ({ state: "alive" }) });
    for (const h of [holder({ hostname: "pod-fleet-7" }), holder({ pidNs: "other" })]) {
      const j = judgeHolder(h, late);
      assert.equal(j.state, "gone", h.hostname);
      assert.match(j.detail, /lease expired at 2026-12-06T03:00:35.000Z/);
    }
    const mine = judgeHolder(holder(), late);
    assert.equal(mine.state, "held");
    assert.match(mine.detail, /has not renewed its lease since 2026-12-06T03:00:05.000Z/);
    assert.equal(judgeHolder(holder(), here({ now: t0 + 36_000 })).state, "gone");
  });

  it("a holder that keeps no lease is gone only with proof on its own machine, unknown elsewhere", () => {
    const old = { renewedAt: undefined, ttlMs: undefined, bootId: undefined, pidNs: undefined };
    assert.equal(judgeHolder(holder(old), here({ bootId: undefined, pidNs: undefined })).state, "gone");
    assert.equal(judgeHolder(holder({ ...old, hostname: "other" }), here()).state, "unknown");
    // Recorded without boot id and pid namespace, read where they are known: not provably this machine.
    assert.equal(judgeHolder(holder(old), here()).state, "unknown");
  });

  it("a reboot of the same host ends its holders' processes only by lease: the boot id differs", () => {
    assert.equal(samePlace(holder({ bootId: "boot-b" }), here()), false);
    assert.equal(judgeHolder(holder({ bootId: "boot-b" }), here({ now: t0 + 40_000 })).state, "gone");
  });
});
