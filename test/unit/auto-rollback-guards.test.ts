import { strict as assert } from "node:assert";
import { AutoRollbackFacts, AutoRollbackGuards, decideAutoRollback } from "../../lib/planning/auto-rollback";
import type { HistoryEntry } from "../../lib/records/history-record";

const minute = 60_000;
const now = Date.parse("2026-03-01T03:00:00Z");
const defaults: AutoRollbackGuards = { maxChangeAgeMs: 60 * minute, maxRollbacks: 1, windowMs: 60 * minute };

/** History entries, oldest first in the call, each `ago` minutes before now (ended then too). */
function history(...entries: Array<Partial<HistoryEntry> & { op: string; ago: number }>): HistoryEntry[] {
  return entries
    .map(({ ago, ...e }, i) => {
      const at = new Date(now - ago * minute).toISOString();
      return { revision: i + 1, result: "succeeded", startedAt: at, finishedAt: at, resourceChanges: {}, ...e } as HistoryEntry;
    })
    .reverse();
}

const facts = (h: HistoryEntry[], extra: Partial<AutoRollbackFacts> = {}): AutoRollbackFacts => ({ history: h, rollbackTo: "v1", now, guards: defaults, ...extra });

describe("whether watch --auto-rollback rolls back by itself when a trigger fires", () => {
  const deployed = history({ op: "deploy", to: "v1", ago: 600, verification: "passed" }, { op: "deploy", from: "v1", to: "v2", ago: 5, verification: "passed" });

  it("rolls back a change made minutes ago, on a free stack, with no automatic rollback in the window", () => {
    assert.deepEqual(decideAutoRollback(facts(deployed)), { action: "roll-back", from: "v2", to: "v1" });
  });

  it("defers while another operation holds the stack, before any other guard", () => {
    const d = decideAutoRollback(facts(deployed, { heldBy: { what: "stackpin deploy v2 -> v3 by alice", detail: "pid 42 on ci-1 is running" }, rollbackTo: undefined }));
    assert.equal(d.action, "defer");
    assert.match((d as { reason: string }).reason, /another operation holds the stack: stackpin deploy v2 -> v3 by alice \(pid 42 on ci-1 is running\)/);
  });

  it("defers while the newest update has not ended", () => {
    const h = [{ ...deployed[0], revision: 3, op: "deploy", from: "v2", to: "v3", result: "in-progress", finishedAt: undefined }, ...deployed];
    const d = decideAutoRollback(facts(h));
    assert.deepEqual(d.action, "defer");
    assert.match((d as { reason: string }).reason, /deploy v2 -> v3 \(revision 3\), has not ended \(in-progress\)/);
  });

  it("pages when nothing verified is there to go back to", () => {
    assert.deepEqual(decideAutoRollback(facts(deployed, { rollbackTo: undefined })), { action: "page", guard: "no-target", reason: "no verified version to roll back to" });
  });

  it("never rolls back a rollback that failed, in its update or its verification, whoever started it", () => {
    for (const failed of [{ result: "failed" }, { verification: "failed: smoke home page answers exited 1" }]) {
      const h = history(
        { op: "deploy", to: "v1", ago: 600, verification: "passed" },
        { op: "deploy", from: "v1", to: "v2", ago: 10, verification: "passed" },
        { op: "rollback", from: "v2", to: "v1", ago: 2, reason: "error rate 7% after v2", ...failed },
      );
      const d = decideAutoRollback(facts(h, { guards: { ...defaults, maxRollbacks: 10 } }));
      assert.equal(d.action, "page");
      assert.equal((d as { guard: string }).guard, "failed-rollback");
      assert.match((d as { reason: string }).reason, /rollback v2 -> v1 \(revision 3\), is a rollback that failed/);
    }
  });

  it("pages when the live version was put there by an automatic rollback, watch's or a deploy's", () => {
    for (const reason of ["trigger: error rate above 5%: 0.09 > 0.05", "auto-rollback: v2 failed its health gate"]) {
      const h = history(
        { op: "deploy", to: "v1", ago: 600, verification: "passed" },
        { op: "deploy", from: "v1", to: "v2", ago: 10, verification: "passed" },
        { op: "rollback", from: "v2", to: "v1", ago: 2, reason, verification: "passed" },
      );
      const d = decideAutoRollback(facts(h, { rollbackTo: "v2", guards: { ...defaults, maxRollbacks: 10 } }));
      assert.equal((d as { guard: string }).guard, "automatic-rollback-live");
      assert.match((d as { reason: string }).reason, /^v1 was put live by an automatic rollback, rollback v2 -> v1 \(revision 3\)/);
    }
  });

  it("rolls back past a manual rollback: only automatic ones are held against the live version", () => {
    const h = history(
      { op: "deploy", to: "v1", ago: 600, verification: "passed" },
      { op: "deploy", from: "v1", to: "v2", ago: 30, verification: "passed" },
      { op: "deploy", from: "v2", to: "v3", ago: 20, verification: "passed" },
      { op: "rollback", from: "v3", to: "v2", ago: 5, reason: "alice: v3's checkout is slow", verification: "passed" },
    );
    assert.deepEqual(decideAutoRollback(facts(h)), { action: "roll-back", from: "v2", to: "v1" });
  });

  it("pages when the newest change ended longer ago than maxChangeAgeMs, and rolls back at the edge", () => {
    const at = (ago: number) => history({ op: "deploy", to: "v1", ago: 900, verification: "passed" }, { op: "deploy", from: "v1", to: "v2", ago, verification: "passed" });
    const d = decideAutoRollback(facts(at(61)));
    assert.equal((d as { guard: string }).guard, "stale-change");
    assert.match((d as { reason: string }).reason, /deploy v1 -> v2 \(revision 2\), ended 61 min ago, more than policy\.triggers\.autoRollback\.maxChangeAgeMs \(60 min\)/);
    assert.equal(decideAutoRollback(facts(at(60))).action, "roll-back");
    // The change is the newest apply, failed ones included: a failed deploy 3 minutes ago is fresh.
    const failedRecently = [{ ...at(0)[0], revision: 3, op: "deploy", from: "v2", to: "v3", result: "failed", finishedAt: new Date(now - 3 * minute).toISOString() }, ...at(120)];
    assert.deepEqual(decideAutoRollback(facts(failedRecently)), { action: "roll-back", from: "v3", to: "v1" });
  });

  it("counts watch's rollbacks in the window from history, any outcome, and pages at maxRollbacks", () => {
    const h = history(
      { op: "deploy", to: "v1", ago: 600, verification: "passed" },
      { op: "deploy", from: "v1", to: "v2", ago: 50, verification: "passed" },
      { op: "rollback", from: "v2", to: "v1", ago: 40, reason: "trigger: error rate above 5%: 0.09 > 0.05", verification: "passed" },
      { op: "deploy", from: "v1", to: "v2", ago: 5, verification: "passed" },
    );
    const d = decideAutoRollback(facts(h));
    assert.equal((d as { guard: string }).guard, "rollback-limit");
    assert.match((d as { reason: string }).reason, /^1 automatic rollback\(s\) in the last 60 min \(revision 3\)/);
    assert.equal(decideAutoRollback(facts(h, { guards: { ...defaults, maxRollbacks: 2 } })).action, "roll-back");
    assert.equal(decideAutoRollback(facts(h, { guards: { ...defaults, windowMs: 30 * minute } })).action, "roll-back");
    // A deploy's own automatic rollback is not watch's: it does not count.
    const byDeploy = h.map((e) => (e.op === "rollback" ? { ...e, reason: "auto-rollback: v2 failed its health gate" } : e));
    assert.equal(decideAutoRollback(facts(byDeploy)).action, "roll-back");
  });

  it("never rolls back by itself with maxRollbacks 0", () => {
    const d = decideAutoRollback(facts(deployed, { guards: { ...defaults, maxRollbacks: 0 } }));
    assert.deepEqual([d.action, (d as { guard: string }).guard], ["page", "rollback-limit"]);
  });

  it("decides the same for the same facts (two watches, or one restarted, agree)", () => {
    const f = facts(deployed);
    assert.deepEqual(decideAutoRollback(f), decideAutoRollback(structuredClone(f)));
  });
});
