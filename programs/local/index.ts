import * as crypto from "node:crypto";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { DatabasePlan, normalizePlan, PRIMARY } from "../../lib/planning/database";
import type { RolloutLayout, Slot } from "../../lib/planning/rollout";
import type { VerifySettings } from "../../lib/versions/schema";
import type { ProgramFactory, ProgramReconciler } from "../types";
import { LocalFile } from "./file";
import { HealthGate } from "./gate";
import { PointInTimeRestore, PostgresSnapshot, PostgresTarget, SchemaMigration, WalArchive } from "./postgres";
import { ManagedProcess, stopUnownedProcesses } from "./process";
import { RotatingSecret } from "./secret";
import { ProgramRefusal } from "../../lib/engine/refusal";
import { databaseConnection, urlWithPassword } from "../../lib/planning/database-url";

const artifactsDir = path.join(__dirname, "..", "..", "..", "programs", "local", "artifacts");
const switchScript = path.join(__dirname, "..", "..", "..", "programs", "local", "traffic-switch.js");

/**
 * The embedded default target, all of it owned by the stack and made with Node dynamic providers:
 * - a real HTTP service per release in two slots (blue/green), each started from a versioned artifact
 *   (`artifact: hello-1.0.0` runs `programs/local/artifacts/hello-1.0.0.js`);
 * - a traffic switch (our proxy) that clients go through; it flips only after the slot taking traffic
 *   passed its health gate;
 * - generated secrets (`secrets:` in the version file) as files the services read, rotated forward only;
 * - the settings and token files of the stack's target version;
 * - a Prometheus `file_sd_configs` file listing the slots' `/metrics` (the services' request counts by
 *   status, latency histogram and process memory, labelled with version and slot), the live one marked.
 *
 * Config (project namespace): `message` (required), `artifact`, `replicas`, `features`, `banner`,
 * `region`, `dataDir`, `publicPort` (0 = any free port), `drainMs`, `rolloutDelayMs`, `rolloutHoldFile`, `apiToken` (secret),
 * `database` ({ url, password, archiveDir, pgBin }: a PostgreSQL primary with WAL archiving, usually in
 * stack.yaml; `password` a `secure:` value, kept a secret in state and given to PostgreSQL's tools in a passfile).
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
          STACKPIN_SLOT: slot,
          STACKPIN_SETTINGS: JSON.stringify(release.config),
          STACKPIN_SECRET_FILES: secretFiles,
          // The app's URL carries the password (a secret in state); it is in the environment, never argv.
          ...(database ? { STACKPIN_DATABASE_URL: database.appUrl } : {}),
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

  // Prometheus file-based service discovery: every running slot, the live one marked, rewritten (by an
  // atomic rename) after each switch, so a Prometheus scraping this file follows the switch without a reload.
  const metricsTargets = new LocalFile(
    "metrics-targets",
    {
      path: path.join(runDir, "prometheus", "targets.json"),
      content: pulumi.jsonStringify(
        Object.entries(slots).map(([slot, proc]) => ({
          targets: [pulumi.interpolate`127.0.0.1:${proc.listenPort}`],
          labels: { stack: context.stackName, role: slot === rollout.active ? "live" : "idle" },
        })),
      ),
    },
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
    holdFile: config.get("rolloutHoldFile"),
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
    metricsTargets: metricsTargets.path,
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
 * The database resources, all declared from the stack's record (never from the version being applied):
 * every snapshot kept, every restored instance not removed (oldest first, each restoring the instance
 * live at its time), the archive the restored instances share, and the schema migration on the live
 * instance, which waits for the snapshot taken before it.
 */
function declareDatabase(target: PostgresTarget | undefined, plan: DatabasePlan | undefined, stateDir: string) {
  plan = normalizePlan(plan);
  if (!target || !plan) return undefined;
  const restoreRoot = target.restoreDir ?? path.join(stateDir, "restores");
  const restoreArchive = path.join(restoreRoot, "wal-archive");
  const archiveOf = (instance: string) => (instance === PRIMARY ? target.archiveDir : restoreArchive);
  const snapshotDir = path.join(stateDir, "snapshots");
  // The URL every resource gets has no password; the password is a secret input of each resource that
  // connects, so the state holds it encrypted.
  const connection = databaseConnection(target);
  const primaryUrl = connection.url;
  const password = connection.password === undefined ? undefined : pulumi.secret(connection.password);
  const database = new URL(primaryUrl).pathname.slice(1) || "postgres";
  const instances: Record<string, { url: pulumi.Output<string>; timeline: pulumi.Output<string>; port: pulumi.Output<number | string>; restore?: PointInTimeRestore }> = {
    [PRIMARY]: { url: pulumi.output(primaryUrl), timeline: pulumi.output("current"), port: pulumi.output(new URL(primaryUrl).port) },
  };
  const snapshot = (s: DatabasePlan["snapshots"][number], url: pulumi.Input<string>) =>
    new PostgresSnapshot(`snapshot-${s.name}`, { url, password, source: s.source, pgBin: target.pgBin, name: s.name, version: s.version, dir: snapshotDir });
  // Snapshots already taken keep what they hold; only the one taken now needs its source's address.
  const snapshots = Object.fromEntries(plan.snapshots.filter((s) => s.name !== plan!.takeSnapshot).map((s) => [s.name, snapshot(s, primaryUrl)]));
  const kept = plan.restores.filter((r) => !r.removed);
  const archive = plan.restores.length ? new WalArchive("restore-wal-archive", { dir: restoreArchive }) : undefined;
  const archives = [target.archiveDir, ...(archive ? [restoreArchive] : [])];
  for (const r of kept) {
    const base = snapshots[r.snapshot];
    const source = instances[r.source];
    const restore = new PointInTimeRestore(
      r.name,
      {
        pgBin: target.pgBin,
        snapshotPath: base?.path ?? "",
        snapshotTakenAt: base?.takenAt ?? "",
        time: r.time,
        dataDir: path.join(restoreRoot, r.name),
        database,
        archiveDir: restoreArchive,
        archives,
        sourceName: r.source,
        sourceUrl: source?.url ?? "",
        sourceArchiveDir: archiveOf(r.source),
        password,
        sourceTimeline: source?.timeline ?? "current",
      },
      { dependsOn: archive ? [archive] : [] },
    );
    instances[r.name] = { url: restore.restoredUrl, timeline: restore.timeline, port: restore.port, restore };
  }
  const live = instances[plan.live];
  if (!live) throw new ProgramRefusal("restore-impossible", `the live database ${plan.live} is not kept by this stack`);
  if (plan.takeSnapshot) {
    const s = plan.snapshots.find((x) => x.name === plan!.takeSnapshot)!;
    snapshots[s.name] = snapshot(s, live.url);
  }
  const url = live.url;
  const before = plan.takeSnapshot ? [snapshots[plan.takeSnapshot]] : [];
  const migration = new SchemaMigration(
    "schema",
    { url, password, schema: plan.schema, migrations: plan.migrations, downs: plan.downs },
    { dependsOn: [...before, ...(live.restore ? [live.restore] : [])] },
  );
  const liveRestore = kept.find((r) => r.name === plan!.live);
  const made = plan.restore ? instances[plan.restore.name]?.restore : undefined;
  return {
    appUrl: password ? pulumi.secret(pulumi.all([url, password]).apply(([u, p]) => urlWithPassword(u, p))) : url,
    migration,
    outputs: {
      database: {
        schema: migration.applied,
        url,
        live: plan.live,
        restoredTo: liveRestore?.time,
        restoredFrom: liveRestore?.snapshot,
        policy: plan.policy,
      },
      databaseSnapshots: Object.fromEntries(
        Object.entries(snapshots).map(([name, snap]) => {
          const s = plan!.snapshots.find((x) => x.name === name)!;
          return [name, { version: s.version, source: s.source, takenAt: snap.takenAt, sizeBytes: snap.sizeBytes, durationMs: snap.durationMs }];
        }),
      ),
      databaseInstances: Object.fromEntries(
        Object.entries(instances).map(([name, i]) => {
          const r = kept.find((x) => x.name === name);
          return [
            name,
            {
              port: i.port,
              archiveDir: archiveOf(name),
              ...(r && i.restore
                ? { source: r.source, snapshot: r.snapshot, restoredTo: r.time, timeline: i.timeline, liveFrom: i.restore.liveFrom, durationMs: i.restore.durationMs }
                : {}),
            },
          ];
        }),
      ),
      ...(made ? { restoreDurationMs: made.durationMs } : {}),
    },
  };
}
