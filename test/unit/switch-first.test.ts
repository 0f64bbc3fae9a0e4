import { strict as assert } from "node:assert";
import type { HistoryEntry } from "../../lib/records/history-record";
import type { RolloutLayout } from "../../lib/planning/rollout";
import { switchFirstOf, SwitchTarget } from "../../lib/planning/switch-first";

const v1 = { version: "v1", config: { replicas: 3, message: "one" } };
const v2 = { version: "v2", config: { replicas: 3, message: "two" } };
const layout: RolloutLayout = { active: "green", slots: { blue: v1, green: v2 } };

let n = 0;
function entry(fields: Partial<HistoryEntry>): HistoryEntry {
  n += 1;
  return { revision: n, op: "deploy", result: "succeeded", startedAt: new Date(n * 1000).toISOString(), resourceChanges: {}, ...fields };
}
/** v1 deployed on blue, then v2 on green with v1 kept idle; `extra` newer entries on top. */
const history = (extra: HistoryEntry[] = [], last: Partial<HistoryEntry> = {}): HistoryEntry[] =>
  [
    ...extra,
    entry({ to: "v2", from: "v1", rollout: layout, secretGenerations: { apiKey: 2 }, ...last }),
    entry({ to: "v1", rollout: { active: "blue", slots: { blue: v1 } }, secretGenerations: { apiKey: 2 } }),
  ];
const target = (fields: Partial<SwitchTarget> = {}): SwitchTarget => ({ version: "v1", config: { message: "one", replicas: 3 }, generations: { apiKey: 1 }, ...fields });

describe("a rollback moves traffic first only when it is a pure switch back to a warm slot", () => {
  it("switches to the idle slot running the target as it ran, with the current secrets (a lower generation in the version is kept higher)", () => {
    assert.deepEqual(switchFirstOf(history(), target(), 0), { kind: "switch", slot: "blue", version: "v1" });
  });

  it("goes through the engine after a failed update, whatever it did", () => {
    const failed = entry({ op: "deploy", to: "v3", result: "failed" });
    assert.equal(switchFirstOf(history([failed]), target(), 0).kind, "engine");
  });

  it("goes through the engine when the target runs nowhere, or is the live version", () => {
    assert.match((switchFirstOf(history(), target({ version: "v0" }), 0) as { why: string }).why, /does not run on the idle slot/);
    assert.equal(switchFirstOf(history(), target({ version: "v2", config: v2.config }), 0).kind, "engine");
  });

  it("goes through the engine when the idle slot runs the version with other settings", () => {
    assert.match((switchFirstOf(history(), target({ config: { message: "one", replicas: 5 } }), 0) as { why: string }).why, /other settings/);
  });

  it("goes through the engine when a secret's generation rises", () => {
    assert.match((switchFirstOf(history(), target({ generations: { apiKey: 3 } }), 0) as { why: string }).why, /generation/);
    assert.equal(switchFirstOf(history(), target({ generations: { apiKey: 1, signing: 1 } }), 0).kind, "engine");
  });

  it("goes through the engine when the database schema changes, and when approval is required", () => {
    const withDb = history([], { database: { schema: 2, migrations: [], downs: [], snapshots: [], restores: [], live: "primary", policy: "migrate" } });
    assert.equal(switchFirstOf(withDb, target({ schema: 1 }), 0).kind, "engine");
    assert.equal(switchFirstOf(withDb, target({ schema: 2 }), 0).kind, "switch");
    assert.match((switchFirstOf(history(), target(), 1) as { why: string }).why, /approval/);
  });
});
