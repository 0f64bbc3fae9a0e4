import * as crypto from "node:crypto";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { DatabasePlan } from "../../lib/database";
import type { RolloutLayout, Slot } from "../../lib/rollout";
import type { VerifySettings } from "../../lib/versions/schema";
import type { ProgramFactory, ProgramReconciler } from "../types";
import { LocalFile } from "./file";
import { HealthGate } from "./gate";
import { PointInTimeRestore, PostgresSnapshot, PostgresTarget, SchemaMigration } from "./postgres";
import { ManagedProcess, stopUnownedProcesses } from "./process";
import { RotatingSecret } from "./secret";

const artifactsDir = path.join(__dirname, "..", "..", "..", "programs", "local", "artifacts");
const switchScript = path.join(__dirname, "..", "..", "..", "programs", "local", "traffic-switch.js");

/**
 * The embedded default target, all of it owned by the stack and made with Node dynamic providers:
 * - a real HTTP service per release in two slots (blue/green), each started from a versioned artifact
 *   (`artifact: hello-1.0.0` runs `programs/local/artifacts/hello-1.0.0.js`);
 * - a traffic switch (our proxy) that clients go through; it flips only after the slot taking traffic
 *   passed its health gate;
 * - generated secrets (`secrets:` in the version file) as files the services read, rotated forward only;
 * - the settings and token files of the stack's target version.
 *
 * Config (project namespace): `message` (required), `artifact`, `replicas`, `features`, `banner`,
 * `region`, `dataDir`, `publicPort` (0 = any free port), `drainMs`, `rolloutDelayMs`, `apiToken` (secret),
 * `database` ({ url, archiveDir, pgBin }: a PostgreSQL primary with WAL archiving, usually in stack.yaml).
 * stackpin's own config: `stackpin:version`, `stackpin:rollout`, `stackpin:secrets`, `stackpin:verify`,
 * `stackpin:database` (snapshots to keep and take, the schema, down migrations, a restore).
 */
export const localProgram: ProgramFactory = (context) => async () => {
  const config = new pulumi.Config();
  const sp = new pulumi.Config("stackpin");
  const version = sp.require("version");
  const rollout = sp.requireObject<RolloutLayout>("rollout");
  const generations = sp.getObject<Record<string, number>>("secrets") ?? {};
  const verify = sp.requireObject<VerifySettings>("verify");
  const runDir = path.join(context.stateDir, "run");
  const drainMs = config.getNumber("drainMs") ?? 2000;

  const secretPath = (name: string) => path.join(context.stateDir, "secrets", `${name}.json`);
  const secrets = Object.fromEntries(
    Object.entries(generations).map(([name, generation]) => [
      name,
      new RotatingSecret(`secret-${name}`, { generation, path: secretPath(name) }),
    ]),
  );
  const secretFiles = JSON.stringify(Object.fromEntries(Object.keys(secrets).map((n) => [n, secretPath(n)])));

  const database = declareDatabase(
    config.getObject<PostgresTarget>("database"),
    sp.getObject<DatabasePlan>("database"),
    context.stateDir,
  );

  const slots: Partial<Record<Slot, ManagedProcess>> = {};
  for (const slot of ["blue", "green"] as const) {
    const release = rollout.slots[slot];
    if (!release) continue;
    const artifact = String(release.config.artifact ?? "hello-1.0.0");
    slots[slot] = new ManagedProcess(
      `slot-${slot}`,
      {
        script: path.join(artifactsDir, `${artifact}.js`),
        env: {
          STACKPIN_VERSION: release.version,
          STACKPIN_SETTINGS: JSON.stringify(release.config),
          STACKPIN_SECRET_FILES: secretFiles,
          ...(database ? { STACKPIN_DATABASE_URL: database.url } : {}),
        },
        runDir,
        drainMs,
      },
      { dependsOn: [...Object.values(secrets), ...(database ? [database.migration] : [])] },
    );
  }
  const live = slots[rollout.active];
  if (!live) throw new Error(`stackpin:rollout names ${rollout.active} as active, but it runs nothing`);
  const liveVersion = rollout.slots[rollout.active]!.version;
  const gate = new HealthGate("gate", {
    url: pulumi.interpolate`http://127.0.0.1:${live.listenPort}${verify.health.path}`,
    expectVersion: liveVersion,
    pid: live.pid,
    health: verify.health,
  });
  const route = new LocalFile(
    "route",
    {
      path: path.join(runDir, "route.json"),
      content: pulumi.jsonStringify({ slot: rollout.active, version: liveVersion, target: pulumi.interpolate`http://127.0.0.1:${live.listenPort}` }),
    },
    { dependsOn: [gate] },
  );
  const trafficSwitch = new ManagedProcess(
    "traffic-switch",
    { script: switchScript, env: { ROUTE_FILE: route.path }, runDir, port: config.getNumber("publicPort") ?? 0, drainMs },
    { dependsOn: [route] },
  );

  const message = config.require("message");
  const dir = path.join(context.stateDir, config.get("dataDir") ?? "app");
  const settings = new LocalFile("app-settings", {
    path: path.join(dir, "settings.json"),
    content:
      JSON.stringify(
        {
          version,
          message,
          replicas: config.getNumber("replicas") ?? 1,
          features: config.getObject<Record<string, unknown>>("features") ?? {},
          banner: config.get("banner"),
          region: config.get("region") ?? "local",
        },
        null,
        2,
      ) + "\n",
    delayMs: config.getNumber("rolloutDelayMs") ?? 0,
  });
  const token = config.getSecret("apiToken");
  const tokenFile = token
    ? new LocalFile("api-token", { path: path.join(dir, "api-token"), content: token, mode: "600" })
    : undefined;

  return {
    version,
    endpoint: pulumi.interpolate`http://127.0.0.1:${trafficSwitch.listenPort}`,
    activeSlot: rollout.active,
    slots: Object.fromEntries(
      Object.entries(slots).map(([slot, proc]) => [
        slot,
        { version: rollout.slots[slot as Slot]!.version, pid: proc.pid, port: proc.listenPort },
      ]),
    ),
    switchPid: trafficSwitch.pid,
    secretGenerations: generations,
    ...(database ? database.outputs : {}),
    secretFingerprints: Object.fromEntries(Object.entries(secrets).map(([n, s]) => [n, s.fingerprint])),
    message,
    replicas: config.getNumber("replicas") ?? 1,
    features: config.getObject<Record<string, unknown>>("features") ?? {},
    region: config.get("region") ?? "local",
    settingsPath: settings.path,
    tokenPath: tokenFile?.path,
    tokenSha256: token?.apply((t) => crypto.createHash("sha256").update(t).digest("hex")),
  };
};

/**
 * After an interrupted update: stops service and switch processes that were started but that the state
 * does not record (their create never finished), so nothing runs that `destroy` could not stop.
 */
export const reconcileLocal: ProgramReconciler = async (context, state) => {
  const runDir = path.join(context.stateDir, "run");
  const owned = new Set(
    state.flatMap((r) => (r.type.endsWith(":ManagedProcess") && r.outputs.runDir === runDir && typeof r.outputs.pid === "number" ? [r.outputs.pid] : [])),
  );
  const stopped = await stopUnownedProcesses(runDir, owned);
  return stopped.map((p) => `stopped process ${p.pid} (${path.basename(p.command.split(" ").pop() ?? p.command)}), started by an interrupted create that the state does not record`);
};

/**
 * The database resources: every snapshot the plan keeps (the new one first), the restore the app runs
 * on, and the schema migration, which waits for the snapshot taken before it.
 */
function declareDatabase(target: PostgresTarget | undefined, plan: DatabasePlan | undefined, stateDir: string) {
  if (!target || !plan) return undefined;
  const snapshots = Object.fromEntries(
    plan.snapshots.map((s) => [
      s.name,
      new PostgresSnapshot(`snapshot-${s.name}`, { ...target, name: s.name, version: s.version, dir: path.join(stateDir, "snapshots") }),
    ]),
  );
  const restoreFrom = plan.restore ? snapshots[plan.restore.snapshot] : undefined;
  if (plan.restore && !restoreFrom) throw new Error(`[stackpin:restore-impossible] snapshot ${plan.restore.snapshot} is not kept by this stack`);
  const restore =
    plan.restore && restoreFrom
      ? new PointInTimeRestore("restore", {
          ...target,
          snapshotPath: restoreFrom.path,
          snapshotTakenAt: restoreFrom.takenAt,
          time: plan.restore.time,
          dataDir: path.join(target.restoreDir ?? path.join(stateDir, "restores"), `${plan.restore.snapshot}-${plan.restore.time.replace(/[^0-9]/g, "")}`),
          database: new URL(target.url).pathname.slice(1) || "postgres",
        })
      : undefined;
  const url = restore ? restore.restoredUrl : pulumi.output(target.url);
  const before = plan.takeSnapshot ? [snapshots[plan.takeSnapshot]] : [];
  const migration = new SchemaMigration(
    "schema",
    { url, schema: plan.schema, migrations: plan.migrations, downs: plan.downs },
    { dependsOn: [...before, ...(restore ? [restore] : [])] },
  );
  return {
    url,
    migration,
    outputs: {
      database: {
        schema: migration.applied,
        url: url.apply((u) => u.replace(/:[^:@/]*@/, ":***@")),
        restoredTo: plan.restore?.time,
        restoredFrom: plan.restore?.snapshot,
        policy: plan.policy,
      },
      databaseSnapshots: Object.fromEntries(
        Object.entries(snapshots).map(([name, snap]) => [
          name,
          { version: plan.snapshots.find((s) => s.name === name)!.version, takenAt: snap.takenAt, sizeBytes: snap.sizeBytes, durationMs: snap.durationMs },
        ]),
      ),
      ...(restore ? { restoreDurationMs: restore.durationMs } : {}),
    },
  };
}
