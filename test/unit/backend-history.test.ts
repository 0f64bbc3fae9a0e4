import { strict as assert } from "node:assert";
import * as zlib from "node:zlib";
import { historyNames, shownConfigValue, updateSummaryOf } from "../../lib/engine/backend-history";

describe("a stack's history read from the backend's own records", () => {
  const record = {
    kind: "update",
    startTime: 1796553632,
    message: "stackpin deploy v1 -> v2 by alice",
    environment: { "exec.kind": "auto.inline", updatePlan: "true" },
    config: {
      "app:message": "hello",
      "app:token": { secure: "v1:abc:def" },
      "app:database": { url: "postgres://app@127.0.0.1/shop", password: { secure: "v1:xyz" } },
      "app:limits": { cpu: 2, tags: ["a", "b"] },
    },
    version: 0,
    result: "succeeded",
    endTime: 1796553640,
    resourceChanges: { same: 3, update: 1 },
  };

  it("shows config as the CLI does without --show-secrets: values, secrets only marked, objects as JSON text and parsed", () => {
    assert.deepEqual(shownConfigValue("hello"), { value: "hello", secret: false });
    assert.deepEqual(shownConfigValue({ secure: "v1:abc:def" }), { secret: true });
    assert.deepEqual(shownConfigValue(record.config["app:database"]), { secret: true });
    assert.deepEqual(shownConfigValue({ cpu: 2, tags: ["a", "b"] }), { value: '{"cpu":2,"tags":["a","b"]}', secret: false, objectValue: { cpu: 2, tags: ["a", "b"] } });
  });

  it("reads a record, plain or gzip-compressed, into an update summary with dates and no ciphertext", () => {
    for (const raw of [Buffer.from(JSON.stringify(record)), zlib.gzipSync(JSON.stringify(record))]) {
      const u = updateSummaryOf(raw)!;
      assert.equal(u.startTime.toISOString(), "2026-12-06T10:40:32.000Z");
      assert.equal((u.endTime as Date).toISOString(), "2026-12-06T10:40:40.000Z");
      assert.deepEqual([u.kind, u.result, u.message, u.version], ["update", "succeeded", record.message, 0]);
      assert.deepEqual(u.resourceChanges, { same: 3, update: 1 });
      assert.ok(!JSON.stringify(u).includes("v1:abc:def") && !JSON.stringify(u).includes("v1:xyz"), "a ciphertext was passed on");
    }
  });

  it("leaves an update in progress without an end, and refuses what it does not know", () => {
    const running = updateSummaryOf(Buffer.from(JSON.stringify({ ...record, result: "in-progress" })))!;
    assert.equal(running.endTime, undefined);
    assert.equal(updateSummaryOf(Buffer.from("{not json")), undefined);
    assert.equal(updateSummaryOf(Buffer.from(JSON.stringify({ kind: "update" }))), undefined);
  });

  it("orders records newest first by name, and gives up on zstd-compressed ones (the CLI reads those)", () => {
    const names = ["dev-1796553632705567744.history.json", "dev-1796553700000000000.history.json.gz", "dev-1796553632705567744.checkpoint.json", "dev-1796553661594207015.history.json"];
    assert.deepEqual(historyNames(names), ["dev-1796553700000000000.history.json.gz", "dev-1796553661594207015.history.json", "dev-1796553632705567744.history.json"]);
    assert.equal(historyNames([...names, "dev-1796553800000000000.history.json.zst"]), undefined);
  });
});
