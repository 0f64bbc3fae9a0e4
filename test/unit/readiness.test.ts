import { strict as assert } from "node:assert";
import type { HistoryEntry } from "../../lib/records/history-record";
import { candidatesOf, Leg, legOfFailure, readinessChanges, readinessLine, span, TargetReadiness, targetReadiness } from "../../lib/planning/readiness";

let n = 0;
function entry(fields: Partial<HistoryEntry>): HistoryEntry {
  n += 1;
  return { revision: n, op: "deploy", result: "succeeded", verification: "passed", startedAt: new Date(n * 1000).toISOString(), resourceChanges: {}, ...fields };
}
/** Newest first, as history is read. */
const life = (...entries: HistoryEntry[]) => entries.reverse();

const at = { checkedAt: "2026-12-06T10:00:00.000Z", durationMs: 1200 };
const ok = (leg: Leg["leg"], detail = "fine"): Leg => ({ leg, ok: true, detail });
const target = (version: string, legs: Leg[], window?: TargetReadiness["window"]) => targetReadiness({ version, as: ["last good"] }, legs, at, window);

describe("rollback readiness: which ways back are checked", () => {
  it("by default the last good version and the previous one, once each, never the live one", () => {
    const h = life(entry({ to: "v1" }), entry({ to: "v2" }), entry({ to: "v3" }));
    assert.deepEqual(candidatesOf(h), [{ version: "v2", as: ["last good", "previous"] }]);
  });

  it("the last good version skips releases that failed verification; previous is the one before the live one", () => {
    const h = life(entry({ to: "v1" }), entry({ to: "v2", verification: "failed: 500" }), entry({ to: "v3" }));
    assert.deepEqual(candidatesOf(h), [
      { version: "v1", as: ["last good"] },
      { version: "v2", as: ["previous"] },
    ]);
  });

  it("after a failed apply the version still live is a way back too", () => {
    const h = life(entry({ to: "v1" }), entry({ to: "v2" }), entry({ to: "v3", result: "failed", verification: undefined }));
    assert.deepEqual(candidatesOf(h).map((c) => c.version), ["v2", "v1"]);
  });

  it("--all adds every version applied successfully before, newest first, each once", () => {
    const h = life(entry({ to: "v1" }), entry({ to: "v2" }), entry({ op: "rollback", to: "v1", from: "v2" }), entry({ to: "v3" }), entry({ to: "v4" }));
    assert.deepEqual(candidatesOf(h, { all: true }), [
      { version: "v3", as: ["last good", "previous"] },
      { version: "v1", as: ["applied before"] },
      { version: "v2", as: ["applied before"] },
    ]);
  });

  it("one asked for is the only one; a stack with nothing before has none", () => {
    const h = life(entry({ to: "v1" }), entry({ to: "v2" }));
    assert.deepEqual(candidatesOf(h, { to: "v1" }), [{ version: "v1", as: ["asked"] }]);
    assert.deepEqual(candidatesOf(life(entry({ to: "v1" }))), []);
  });
});

describe("rollback readiness: legs, lines and changes", () => {
  it("a way back is ready only when every leg holds; a leg not checked is not a pass", () => {
    assert.equal(target("v1", [ok("config"), ok("engine")]).ready, true);
    assert.equal(target("v1", [ok("config"), { leg: "engine", ok: undefined, detail: "not checked" }]).ready, false);
  });

  it("legs are shown in a fixed order whatever order they were found in", () => {
    const t = target("v1", [ok("engine"), ok("freeze"), ok("config"), ok("database")]);
    assert.deepEqual(t.legs.map((l) => l.leg), ["config", "database", "freeze", "engine"]);
  });

  it("the line names the restore window when there is one, else the database path; not ready names the first broken leg", () => {
    const window = { from: "2026-12-06T03:48:00.000Z", to: "2026-12-06T10:00:00.000Z" };
    assert.equal(readinessLine(target("v41", [ok("config"), ok("database")], window)), "rollback to v41: ready — restore window 6 h 12 min");
    assert.equal(readinessLine(target("v41", [ok("config"), ok("database", "the database is left alone")])), "rollback to v41: ready — the database is left alone");
    const broken = target("v41", [ok("config"), { leg: "database", ok: false, detail: "WAL segment 000000010000000000000007 is in no WAL archive" }, { leg: "engine", ok: undefined, detail: "not checked" }]);
    assert.equal(readinessLine(broken), "rollback to v41: NOT READY — database: WAL segment 000000010000000000000007 is in no WAL archive");
  });

  it("spans read as people say them", () => {
    assert.deepEqual([span(45_000), span(3 * 60_000 + 5_000), span((6 * 60 + 12) * 60_000), span(50 * 3_600_000)], ["45 s", "3 min", "6 h 12 min", "2 d 2 h"]);
  });

  it("a webhook-worthy change: a way back that breaks (or is first seen broken), and one that comes back; steady states are no news", () => {
    const good = target("v41", [ok("database")]);
    const bad = target("v41", [{ leg: "database", ok: false, detail: "the base backup is missing" }]);
    assert.deepEqual(readinessChanges(undefined, [good]), []);
    assert.deepEqual(readinessChanges(undefined, [bad]), [{ version: "v41", change: "broken", leg: "database", detail: "database: the base backup is missing" }]);
    assert.deepEqual(readinessChanges([good], [bad]), [{ version: "v41", change: "broken", leg: "database", detail: "database: the base backup is missing" }]);
    assert.deepEqual(readinessChanges([bad], [bad]), []);
    assert.deepEqual(readinessChanges([bad], [good]), [{ version: "v41", change: "restored", detail: "rollback to v41: ready — fine" }]);
  });

  it("an error met while planning belongs to the leg its code names", () => {
    assert.deepEqual(
      ["wrong-passphrase", "secrets-provider-unavailable", "restore-impossible", "database-unavailable", "unknown-version", "approval-required", "engine-failed"].map(legOfFailure),
      ["secrets", "secrets", "database", "database", "config", "approvals", "engine"],
    );
  });
});
