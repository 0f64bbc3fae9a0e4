import { strict as assert } from "node:assert";
import { DataLossApprovalRequiredError, ExitCode } from "../../lib/errors";
import type { DatabasePlan } from "../../lib/planning/database";
import { readAllPages } from "../../lib/engine/history-pages";
import type { HistoryEntry, RecordedConfig } from "../../lib/records/history-record";
import { databaseAsLeft, CheckpointResource } from "../../lib/planning/database-left";
import { planDesiredState } from "../../lib/planning/desired-state";
import { ranVersion } from "../../lib/planning/ran-version";
import type { VersionFile } from "../../lib/versions/schema";

const verify = { health: { path: "/health", retries: 5, intervalMs: 200, backoff: 2, timeoutMs: 2000 }, checkVersion: true, smoke: [] };

function file(version: string, config: VersionFile["config"], secrets: VersionFile["secrets"] = {}): VersionFile {
  return { version, config, secrets, verify };
}

function recorded(config: Record<string, string | { secret: true; value?: string }>, generations: Record<string, number> = {}): RecordedConfig {
  const out: RecordedConfig = {};
  for (const [k, v] of Object.entries(config)) out[k] = typeof v === "string" ? { value: v, secret: false } : v;
  out["stackpin:secrets"] = { value: JSON.stringify(generations), secret: false };
  out["stackpin:verify"] = { value: JSON.stringify(verify), secret: false };
  return out;
}

/** A history entry as `toHistoryEntries` makes one: the secret generations parsed from its recorded config. */
function entry(revision: number, op: string, to: string | undefined, result: string, extra: Partial<HistoryEntry> = {}): HistoryEntry {
  const generations = extra.config?.["stackpin:secrets"]?.value;
  return {
    revision,
    op,
    to,
    result,
    startedAt: new Date(revision * 1000).toISOString(),
    resourceChanges: {},
    ...(generations ? { secretGenerations: JSON.parse(generations) as Record<string, number> } : {}),
    ...extra,
  };
}

describe("the version as it ran", () => {
  const project = "shop";

  it("is the config the newest successful update of that version recorded, in the file's key order", () => {
    const history = [
      entry(3, "deploy", "v2", "succeeded", { config: recorded({ "shop:message": "v2" }) }),
      entry(2, "deploy", "v1", "failed", { config: recorded({ "shop:message": "a failed try" }) }),
      entry(1, "deploy", "v1", "succeeded", { config: recorded({ "shop:replicas": "2", "shop:message": "v1", "shop:features": '{"a":true}' }) }),
    ];
    const onDisk = file("v1", { message: "v1", replicas: 2, features: { a: true } });
    const ran = ranVersion(history, onDisk, project, {})!;
    assert.equal(ran.revision, 1);
    assert.deepEqual(ran.version.config, { message: "v1", replicas: 2, features: { a: true } });
    assert.deepEqual(Object.keys(ran.version.config), ["message", "replicas", "features"]);
    assert.deepEqual(ran.fileDiffers, []);
  });

  it("is undefined for a version no successful update applied (a failed one does not count)", () => {
    const history = [entry(2, "deploy", "v9", "failed", { config: recorded({ "shop:message": "v9" }) }), entry(1, "deploy", "v1", "succeeded", { config: recorded({}) })];
    assert.equal(ranVersion(history, file("v9", { message: "v9" }), project, {}), undefined);
    assert.equal(ranVersion(history, file("v2", { message: "v2" }), project, {}), undefined);
  });

  it("says how an edited file differs, and keeps what ran", () => {
    const history = [entry(1, "deploy", "v1", "succeeded", { config: recorded({ "shop:message": "v1", "shop:old": "x" }, { api: 1 }) })];
    const ran = ranVersion(history, file("v1", { message: "edited", added: true }, { api: { generation: 2 } }), project, {})!;
    assert.deepEqual(ran.version.config, { message: "v1", old: "x" });
    assert.deepEqual(ran.fileDiffers, [
      "added: in the file, not in what ran",
      'message: ran "v1", the file says "edited"',
      "old: ran, not in the file",
      "secrets.api: ran at generation 1, the file says 2",
    ]);
  });

  it("keeps a generation raised since by a rotation (forward-only), without calling the file different", () => {
    const history = [entry(1, "rollback", "v1", "succeeded", { config: recorded({ "shop:message": "v1" }, { api: 3 }) })];
    const ran = ranVersion(history, file("v1", { message: "v1" }, { api: { generation: 1 } }), project, {})!;
    assert.deepEqual(ran.version.secrets, { api: { generation: 3 } });
    assert.deepEqual(ran.fileDiffers, []);
  });

  it("takes stack-level keys from stack.yaml now, and a secret's ciphertext from what ran", () => {
    const history = [
      entry(1, "deploy", "v1", "succeeded", { config: recorded({ "shop:database": "old-host", "shop:message": "v1", "shop:token": { secret: true, value: "v1:ran-ciphertext" } }) }),
    ];
    const ran = ranVersion(history, file("v1", { message: "v1", token: { secure: "v1:new-ciphertext" } }), project, { database: "new-host" })!;
    assert.deepEqual(ran.version.config, { message: "v1", token: { secure: "v1:ran-ciphertext" } });
    assert.deepEqual(ran.fileDiffers, ["token: the file's secret is not the one that ran"]);
  });
});

describe("the database as the past left it", () => {
  const plan = (schema: number, extra: Partial<DatabasePlan> = {}): DatabasePlan => ({
    schema,
    migrations: [],
    downs: [],
    snapshots: [],
    restores: [],
    live: "primary",
    policy: "migrate",
    ...extra,
  });
  const snapshot = (name: string, takenAt: string): CheckpointResource => ({
    urn: `urn:pulumi:shop::stackpin-shop::pulumi-nodejs:dynamic/stackpin-local:PostgresSnapshot::snapshot-${name}`,
    type: "pulumi-nodejs:dynamic/stackpin-local:PostgresSnapshot",
    outputs: { name, takenAt },
  });
  const schema = (applied: number): CheckpointResource => ({
    urn: "urn:pulumi:shop::stackpin-shop::pulumi-nodejs:dynamic/stackpin-local:SchemaMigration::schema",
    type: "pulumi-nodejs:dynamic/stackpin-local:SchemaMigration",
    outputs: { applied },
  });
  const failedV2 = plan(2, { snapshots: [{ name: "pre-v2", version: "v2", source: "primary", schema: 1 }], takeSnapshot: "pre-v2" });

  it("a failed update whose migration ran moves the schema, and its snapshot is kept", () => {
    const history = [entry(2, "deploy", "v2", "failed", { database: failedV2 }), entry(1, "deploy", "v1", "succeeded", { database: plan(1) })];
    const left = databaseAsLeft(history, [snapshot("pre-v2", "2026-12-06T04:00:00Z"), schema(2)]);
    assert.equal(left.plan?.schema, 2);
    assert.deepEqual(left.plan?.snapshots.map((s) => s.name), ["pre-v2"]);
    assert.equal(left.plan?.takeSnapshot, undefined, "a snapshot already taken is not taken again");
    assert.deepEqual(left.moved, { revision: 2, version: "v2", schemaFrom: 1, schemaTo: 2, snapshot: "pre-v2" });
    assert.deepEqual(left.snapshotTimes, { "pre-v2": "2026-12-06T04:00:00Z" });
  });

  it("a snapshot in the state but not in the newest successful record is kept, even when the migration never ran", () => {
    const history = [entry(2, "deploy", "v2", "failed", { database: failedV2 }), entry(1, "deploy", "v1", "succeeded", { database: plan(1) })];
    const left = databaseAsLeft(history, [snapshot("pre-v2", "2026-12-06T04:00:00Z"), schema(1)]);
    assert.equal(left.plan?.schema, 1);
    assert.deepEqual(left.keptFromFailed, ["pre-v2"]);
    assert.equal(left.moved, undefined);
  });

  it("a failed update that left nothing changes nothing, and failures before the last success are history", () => {
    const nothing = [entry(2, "deploy", "v2", "failed", { database: failedV2 }), entry(1, "deploy", "v1", "succeeded", { database: plan(1) })];
    assert.deepEqual(databaseAsLeft(nothing, [schema(1)]).plan, plan(1));
    const older = [entry(3, "deploy", "v1", "succeeded", { database: plan(1) }), entry(2, "deploy", "v2", "failed", { database: failedV2 })];
    assert.equal(databaseAsLeft(older, [snapshot("pre-v2", "t"), schema(1)]).keptFromFailed.length, 0);
  });
});

describe("history read page by page", () => {
  it("asks for pages until one comes back short, and keeps their order", async () => {
    const all = Array.from({ length: 1203 }, (_, i) => ({ version: 1203 - i }) as never);
    const asked: number[] = [];
    const read = await readAllPages(async (size, page) => {
      asked.push(page);
      return all.slice((page - 1) * size, page * size);
    });
    assert.equal(read.length, 1203);
    assert.deepEqual(asked, [1, 2, 3]);
    assert.deepEqual(read, all);
  });

  it("reads a short history in one call", async () => {
    let calls = 0;
    await readAllPages(async () => {
      calls++;
      return [];
    });
    assert.equal(calls, 1);
  });
});

describe("the desired state, planned from the world as read (plain values)", () => {
  const stack = { name: "shop", project: "shop", config: {} };
  const now = new Date("2026-12-06T05:00:00Z");
  const v1 = { ...file("v1", { message: "v1" }), database: { schema: 1, backwardCompatible: true, migration: { name: "001_items", up: "001.sql" } } };
  const v2 = { ...file("v2", { message: "v2" }), database: { schema: 2, backwardCompatible: false, migration: { name: "002_drop_note", up: "002.sql" } } };
  const versions = [
    { version: "v1", spec: v1.database, up: "create table items (note text)" },
    { version: "v2", spec: v2.database, up: "alter table items drop column note" },
  ];
  const dbPlan = (schema: number, extra: Partial<DatabasePlan> = {}): DatabasePlan => ({ schema, migrations: [], downs: [], snapshots: [], restores: [], live: "primary", policy: "migrate", ...extra });
  const history = [
    entry(2, "deploy", "v2", "failed", { database: dbPlan(2, { snapshots: [{ name: "pre-v2", version: "v2", source: "primary", schema: 1 }], takeSnapshot: "pre-v2" }) }),
    entry(1, "deploy", "v1", "succeeded", { database: dbPlan(1) }),
  ];
  const resources: CheckpointResource[] = [
    { urn: "urn:pulumi:shop::shop::pulumi-nodejs:dynamic/stackpin-local:PostgresSnapshot::snapshot-pre-v2", type: "pulumi-nodejs:dynamic/stackpin-local:PostgresSnapshot", outputs: { name: "pre-v2", takenAt: "2026-12-06T04:00:00.000Z" } },
    { urn: "urn:pulumi:shop::shop::pulumi-nodejs:dynamic/stackpin-local:SchemaMigration::schema", type: "pulumi-nodejs:dynamic/stackpin-local:SchemaMigration", outputs: { applied: 2 } },
  ];
  const world = { history, outputs: {}, resources };

  it("after a failed update whose migration ran, a rollback is the restore to its snapshot, and needs approval", () => {
    assert.throws(() => planDesiredState(stack, "rollback", v1, world, versions, {}, now), (e: Error) => e instanceof DataLossApprovalRequiredError && e.exitCode === ExitCode.approvalRequired);
    const d = planDesiredState(stack, "rollback", v1, world, versions, { approveDataLoss: true }, now);
    assert.equal(d.database?.plan.policy, "point-in-time-restore");
    assert.equal(d.database?.plan.restore?.snapshot, "pre-v2");
    assert.equal(d.database?.plan.restore?.time, "2026-12-06T04:00:00.000Z");
    assert.ok(d.database?.plan.snapshots.some((s) => s.name === "pre-v2"), "the snapshot is kept");
    assert.deepEqual(JSON.parse(d.config["stackpin:database"] as string).restore.snapshot, "pre-v2");
  });

  it("a snapshot in the state but absent from the newest outputs and record is kept by the next deploy", () => {
    const left = { ...world, resources: [resources[0], { ...resources[1], outputs: { applied: 1 } }] };
    const d = planDesiredState(stack, "deploy", v1, left, versions, {}, now);
    assert.ok(d.database?.plan.snapshots.some((s) => s.name === "pre-v2"));
    assert.ok(d.warnings.some((w) => /snapshot pre-v2, taken by an update that failed, is kept/.test(w)));
  });
});
