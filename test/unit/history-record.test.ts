import { strict as assert } from "node:assert";
import {
  decodeRecord,
  encodeRecord,
  HistoryEntry,
  liveState,
  previousVersion,
} from "../../lib/records/history-record";

let n = 0;
function entry(op: string, to: string | undefined, result = "succeeded", from?: string): HistoryEntry {
  n += 1;
  return { revision: n, op, to, from, result, startedAt: new Date(n * 1000).toISOString(), resourceChanges: {} };
}
/** Builds history newest first from a list written oldest first, as people read a log. */
const newestFirst = (...entries: HistoryEntry[]) => entries.reverse();

describe("history records", () => {
  it("round-trips who, from, to and why through the update message", () => {
    const message = encodeRecord({ op: "rollback", from: "v42", to: "v41", who: "alice", reason: "error rate 7%" });
    assert.equal(message.split("\n")[0], "stackpin rollback v42 -> v41 by alice: error rate 7%");
    assert.deepEqual(decodeRecord(message), { op: "rollback", from: "v42", to: "v41", who: "alice", reason: "error rate 7%" });
  });

  it("ignores messages of updates stackpin did not make", () => {
    assert.equal(decodeRecord("manual pulumi up"), undefined);
    assert.equal(decodeRecord("stackpin-record: {not json"), undefined);
    assert.equal(decodeRecord(undefined), undefined);
  });

  it("takes the live version from the newest successful apply", () => {
    const h = newestFirst(entry("deploy", "v1"), entry("deploy", "v2"), entry("deploy", "v3", "failed"));
    const live = liveState(h);
    assert.equal(live.version, "v2");
    assert.equal(live.failed?.to, "v3");
  });

  it("has no live version after a destroy", () => {
    assert.equal(liveState(newestFirst(entry("deploy", "v1"), entry("destroy", undefined))).version, undefined);
  });

  it("resolves previous to the version live before the current one", () => {
    assert.equal(previousVersion(newestFirst(entry("deploy", "v40"), entry("deploy", "v41"), entry("deploy", "v42"))), "v41");
  });

  it("skips failed applies when resolving previous", () => {
    assert.equal(previousVersion(newestFirst(entry("deploy", "v40"), entry("deploy", "v41", "failed"), entry("deploy", "v42"))), "v40");
  });

  it("never resolves previous to a version that was rolled back from", () => {
    const h = newestFirst(entry("deploy", "v40"), entry("deploy", "v41"), entry("rollback", "v40", "succeeded", "v41"));
    assert.equal(previousVersion(h), undefined);
  });

  it("still resolves previous to a rolled-back version that was deployed again later", () => {
    const h = newestFirst(
      entry("deploy", "v40"),
      entry("deploy", "v41"),
      entry("rollback", "v40", "succeeded", "v41"),
      entry("deploy", "v41"),
      entry("deploy", "v42"),
    );
    assert.equal(previousVersion(h), "v41");
  });

  it("has no previous version before the first deploy", () => {
    assert.equal(previousVersion([]), undefined);
    assert.equal(previousVersion(newestFirst(entry("deploy", "v1"))), undefined);
  });
});
