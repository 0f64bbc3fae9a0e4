import { strict as assert } from "node:assert";
import { DatabasePlan, planDatabase, VersionDatabase } from "../../lib/planning/database";
import { wayBackAfter } from "../../lib/planning/desired-state";
import { ApprovalRequiredError, BackupNotRemovableError, RestoreImpossibleError } from "../../lib/errors";

const v1: VersionDatabase = { version: "v1", spec: { schema: 1, migration: { name: "001", up: "u" }, backwardCompatible: true }, up: "create" };
const v2: VersionDatabase = { version: "v2", spec: { schema: 2, migration: { name: "002", up: "u" }, backwardCompatible: false }, up: "drop" };
const v2down: VersionDatabase = { version: "v2d", spec: { schema: 2, migration: { name: "002d", up: "u", down: "d" }, backwardCompatible: false }, up: "alter", down: "unalter" };
const v3c: VersionDatabase = { version: "v3c", spec: { schema: 2, migration: { name: "002c", up: "u" }, backwardCompatible: true }, up: "add" };
const noDatabase: VersionDatabase = { version: "v3", spec: { schema: 1, backwardCompatible: true } };
const now = new Date("2026-11-24T12:00:00Z");

/** A stack that was restored once (r1, from pre-v2 of the primary) and took a snapshot from r1 since. */
const chained: DatabasePlan = {
  schema: 1,
  migrations: [],
  downs: [],
  snapshots: [
    { name: "pre-v2", version: "v2", source: "primary" },
    { name: "pre-v2-2", version: "v2", source: "r1" },
  ],
  restores: [{ name: "r1", snapshot: "pre-v2", time: "2026-11-24T02:00:00.000Z", source: "primary" }],
  live: "r1",
  policy: "point-in-time-restore",
};
const live = {
  plan: chained,
  snapshotTimes: { "pre-v2": "2026-11-24T02:00:00.000Z", "pre-v2-2": "2026-11-24T06:00:00.000Z" },
  liveFrom: { r1: "2026-11-24T03:00:00.000Z" },
};

describe("database plan: the stack's record, restores that chain, approved retention", () => {
  it("a version without a database section keeps every snapshot and restored instance, and the live one", () => {
    const d = planDatabase("s", "deploy", noDatabase, [v1, v2], live, { now });
    assert.deepEqual(d.plan.snapshots, chained.snapshots);
    assert.deepEqual(d.plan.restores.map((r) => r.name), ["r1"]);
    assert.equal(d.plan.live, "r1");
    assert.equal(d.plan.policy, "unchanged");
  });

  it("a restore to a time when r1 was live restores r1's history, from the newest base backup of r1 before it", () => {
    const d = planDatabase("s", "deploy", noDatabase, [v1, v2], live, { now, restore: { time: "2026-11-24T07:00:00Z" }, approveDataLoss: true });
    assert.deepEqual({ ...d.plan.restore, liveFrom: undefined }, { name: "restore-pre-v2-2-20261124070000000", snapshot: "pre-v2-2", time: "2026-11-24T07:00:00.000Z", source: "r1", liveFrom: undefined });
    assert.equal(d.plan.live, d.plan.restore!.name);
    assert.deepEqual(d.plan.restores.map((r) => r.name), ["r1", d.plan.restore!.name], "the previous live database stays");
  });

  it("before r1's own snapshot, a restore of r1 starts from the primary's base backup it branched from", () => {
    const d = planDatabase("s", "deploy", noDatabase, [v1, v2], live, { now, restore: { time: "2026-11-24T04:00:00Z" }, approveDataLoss: true });
    assert.equal(d.plan.restore!.snapshot, "pre-v2");
    assert.equal(d.plan.restore!.source, "r1");
  });

  it("a time before r1 took over belongs to the primary", () => {
    const d = planDatabase("s", "deploy", noDatabase, [v1, v2], live, { now, restore: { time: "2026-11-24T02:30:00Z" }, approveDataLoss: true });
    assert.equal(d.plan.restore!.source, "primary");
  });

  it("a deploy of an incompatible version takes a fresh snapshot from the live instance; the rollback restores from it", () => {
    const d = planDatabase("s", "deploy", v2, [v1, v2], live, { now });
    // It records the schema r1 is at when it is taken: what a restore from it must hold.
    assert.deepEqual(d.plan.snapshots.at(-1), { name: "pre-v2-3", version: "v2", source: "r1", schema: 1 });
    const after = { ...live, plan: d.plan, snapshotTimes: { ...live.snapshotTimes, "pre-v2-3": "2026-11-24T11:00:00.000Z" } };
    const back = planDatabase("s", "rollback", v1, [v1, v2], after, { now, approveDataLoss: true });
    assert.equal(back.plan.restore!.snapshot, "pre-v2-3");
    assert.equal(back.plan.restore!.source, "r1");
  });

  it("removal needs approval, never takes the live database, and keeps the removed restore's span refused", () => {
    assert.throws(() => planDatabase("s", "deploy", noDatabase, [v1, v2], live, { now, remove: "pre-v2" }), ApprovalRequiredError);
    assert.throws(() => planDatabase("s", "deploy", noDatabase, [v1, v2], live, { now, remove: "r1", approveDataLoss: true }), BackupNotRemovableError);
    const moved = planDatabase("s", "deploy", noDatabase, [v1, v2], live, { now, restore: { time: "2026-11-24T07:00:00Z" }, approveDataLoss: true });
    const state = { ...live, plan: moved.plan };
    const removed = planDatabase("s", "deploy", noDatabase, [v1, v2], state, { now, remove: "r1", approveDataLoss: true });
    assert.equal(removed.plan.restores.find((r) => r.name === "r1")?.removed, true);
    assert.throws(
      () => planDatabase("s", "deploy", noDatabase, [v1, v2], { ...state, plan: removed.plan }, { now, restore: { time: "2026-11-24T05:00:00Z" }, approveDataLoss: true }),
      RestoreImpossibleError,
    );
  });

  it("restoring the same snapshot and time twice makes a second instance with a name of its own", () => {
    const once = planDatabase("s", "deploy", noDatabase, [v1, v2], live, { now, restore: { snapshot: "pre-v2" }, approveDataLoss: true });
    const twice = planDatabase("s", "deploy", noDatabase, [v1, v2], { ...live, plan: once.plan }, { now, restore: { snapshot: "pre-v2" }, approveDataLoss: true });
    assert.equal(twice.plan.restore!.name, `${once.plan.restore!.name}-2`);
  });
});

describe("database plan: the way back a deploy leaves to the version it replaces", () => {
  const fresh = { snapshotTimes: {} };
  const v1Plan = planDatabase("s", "deploy", v1, [v1], fresh, { now }).plan;

  it("an incompatible migration without a down: a restore from the snapshot this deploy takes", () => {
    const deploy = planDatabase("s", "deploy", v2, [v1, v2], { plan: v1Plan, snapshotTimes: {} }, { now });
    assert.equal(
      wayBackAfter("s", "v1", 1, deploy, [v1, v2], {}, now),
      "way back after this deploy: a rollback to v1 needs a point-in-time restore from snapshot pre-v2 (taken by this deploy) and --approve-data-loss: data written after it is lost",
    );
  });

  it("a migration with a down: down migrations; a backward-compatible one: the database is left alone", () => {
    const withDown = planDatabase("s", "deploy", v2down, [v1, v2down], { plan: v1Plan, snapshotTimes: {} }, { now });
    assert.equal(wayBackAfter("s", "v1", 1, withDown, [v1, v2down], {}, now), "way back after this deploy: a rollback to v1 runs down migrations 002d (after a fresh snapshot)");
    const compatible = planDatabase("s", "deploy", v3c, [v1, v3c], { plan: v1Plan, snapshotTimes: {} }, { now });
    assert.equal(wayBackAfter("s", "v1", 1, compatible, [v1, v3c], {}, now), "way back after this deploy: a rollback to v1 leaves the database alone (v1 works with schema 2)");
  });
});
