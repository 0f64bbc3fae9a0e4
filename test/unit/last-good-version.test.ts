import { strict as assert } from "node:assert";
import { HistoryEntry, lastGoodVersion } from "../../lib/records/history-record";

let n = 0;
function entry(op: string, to: string, result = "succeeded", verification?: string): HistoryEntry {
  n += 1;
  return { revision: n, op, to, result, verification, startedAt: new Date(n * 1000).toISOString(), resourceChanges: {} };
}
const newestFirst = (...entries: HistoryEntry[]) => entries.reverse();

describe("the version --auto-rollback goes back to", () => {
  it("is the last that verified, on a stack that verifies", () => {
    const h = newestFirst(entry("deploy", "v1", "succeeded", "passed"), entry("deploy", "v2", "succeeded", "failed: health"), entry("deploy", "v3", "failed", "failed: engine"));
    assert.equal(lastGoodVersion(h, "v4"), "v1");
    assert.equal(lastGoodVersion(newestFirst(entry("deploy", "v1", "succeeded", "failed: health")), "v2"), undefined);
  });

  it("is the last applied, on a stack that never verifies (readiness probes gate its switch)", () => {
    const h = newestFirst(entry("deploy", "v1"), entry("deploy", "v2"), entry("deploy", "v3", "failed", "failed: engine"), entry("rollback", "v2"));
    assert.equal(lastGoodVersion(h, "v4"), "v2");
    assert.equal(lastGoodVersion(h, "v2"), "v1");
  });
});
