import { strict as assert } from "node:assert";
import type { HistoryEntry } from "../../lib/records/history-record";
import { alreadyLive } from "../../lib/operations/rollback-plan";

let n = 0;
function entry(op: string, to: string | undefined, result = "succeeded", verification?: string): HistoryEntry {
  n += 1;
  return { revision: n, op, to, result, verification, startedAt: new Date(n * 1000).toISOString(), resourceChanges: {} };
}
/** History newest first, from a list written oldest first. */
const newestFirst = (...entries: HistoryEntry[]) => entries.reverse();

describe("rollback plan: when the target is already live (STYLE §10)", () => {
  it("skips when the newest update is stackpin's verified apply of the target", () => {
    const h = newestFirst(entry("deploy", "v1", "succeeded", "passed"), entry("deploy", "v2", "succeeded", "passed"), entry("rollback", "v1", "succeeded", "passed"));
    assert.equal(alreadyLive(h, "v1")?.revision, h[0].revision);
    assert.equal(alreadyLive(h, "v2"), undefined, "v2 is not live");
  });

  it("re-applies when verification failed or never ran", () => {
    assert.equal(alreadyLive(newestFirst(entry("deploy", "v1", "succeeded", "failed: health")), "v1"), undefined);
    assert.equal(alreadyLive(newestFirst(entry("deploy", "v1")), "v1"), undefined);
  });

  it("re-applies after a failed apply, a refresh or an update outside stackpin", () => {
    const ok = () => entry("deploy", "v1", "succeeded", "passed");
    assert.equal(alreadyLive(newestFirst(ok(), entry("deploy", "v2", "failed")), "v1"), undefined);
    assert.equal(alreadyLive(newestFirst(ok(), entry("refresh", undefined)), "v1"), undefined);
    assert.equal(alreadyLive(newestFirst(ok(), entry("update", "v1")), "v1"), undefined);
    assert.equal(alreadyLive(newestFirst(ok(), entry("destroy", undefined)), "v1"), undefined);
    assert.equal(alreadyLive([], "v1"), undefined);
  });
});
