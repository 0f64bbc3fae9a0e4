/**
 * The database side of an apply, as data: which schema to converge to, which migrations to run, which
 * snapshots to take and keep, and whether to restore to a point in time. The rollback policy follows the
 * runbooks, in order: (1) if the old release works with the current schema (expand/contract), leave the
 * database alone; (2) if every migration in between has a down, take a fresh snapshot and run the downs;
 * (3) otherwise restore to just before the bad deploy (point-in-time restore), only with approval.
 */
import { ApprovalRequiredError, RestoreImpossibleError } from "./errors";
import type { DatabaseSpec } from "./versions/schema";

/** One migration with its SQL, as handed to the program. */
export interface MigrationStep {
  schema: number;
  name: string;
  sql: string;
}

/** A point-in-time restore the stack runs its app on. */
export interface RestoreSpec {
  /** The base backup (a snapshot) the restore starts from. */
  snapshot: string;
  /** The recovery target time (ISO). */
  time: string;
}

/** What the program is asked to make true about the database (the `stackpin:database` config). */
export interface DatabasePlan {
  /** The schema after the apply. */
  schema: number;
  /** Every known up migration up to `schema`, ascending; the program runs those not yet applied. */
  migrations: MigrationStep[];
  /** Down migrations to run this time, descending; empty unless the policy is `down-migration`. */
  downs: MigrationStep[];
  /** Every snapshot the stack keeps, the new one included. */
  snapshots: Array<{ name: string; version: string }>;
  /** The snapshot taken in this apply, before any migration runs. */
  takeSnapshot?: string;
  /** The restore the app runs on, if any. */
  restore?: RestoreSpec;
  policy: "unchanged" | "migrate" | "expand-contract" | "down-migration" | "point-in-time-restore";
}

/** The plan plus what people must read. */
export interface DatabaseDecision {
  plan: DatabasePlan;
  notes: string[];
  warnings: string[];
  /** The data written in this window is lost (restores only). */
  dataLossWindow?: { from: string; to: string };
}

/** A version's database section with its SQL read. */
export interface VersionDatabase {
  version: string;
  spec: DatabaseSpec;
  up?: string;
  down?: string;
}

/** What the live stack has, from its last successful apply (and its outputs). */
export interface LiveDatabase {
  plan?: DatabasePlan;
  /** When each snapshot's base backup ended, from the program's `databaseSnapshots` output. */
  snapshotTimes: Record<string, string>;
}

/** What the user asked for beyond the version. */
export interface DatabaseRequest {
  /** Restore to this time (ISO) or to this snapshot's time. */
  restore?: { time?: string; snapshot?: string };
  /** The explicit approval a restore (and its data loss) needs. */
  approveDataLoss?: boolean;
  /** Planning for a preview: a missing approval becomes a warning instead of an error. */
  previewOnly?: boolean;
  now: Date;
}

/** The snapshot taken before applying an incompatible `version`. */
export function snapshotNameFor(version: string): string {
  return `pre-${version}`;
}

function migrationsBySchema(versions: VersionDatabase[]): Map<number, VersionDatabase> {
  const map = new Map<number, VersionDatabase>();
  for (const v of versions) {
    if (v.spec.migration && !map.has(v.spec.schema)) map.set(v.spec.schema, v);
  }
  return map;
}

function resolveRestore(
  stack: string,
  live: LiveDatabase,
  request: NonNullable<DatabaseRequest["restore"]>,
  now: Date,
): RestoreSpec {
  const times = Object.entries(live.snapshotTimes).sort((a, b) => a[1].localeCompare(b[1]));
  if (request.snapshot) {
    const time = live.snapshotTimes[request.snapshot];
    if (!time) {
      throw new RestoreImpossibleError(stack, `snapshot ${request.snapshot} does not exist; known: ${times.map(([n]) => n).join(", ") || "(none)"}`);
    }
    return { snapshot: request.snapshot, time: request.time ?? time };
  }
  const target = new Date(request.time as string);
  if (Number.isNaN(target.getTime())) throw new RestoreImpossibleError(stack, `"${request.time}" is not a time (use ISO 8601, e.g. 2026-11-24T05:30:00Z)`);
  if (target > now) throw new RestoreImpossibleError(stack, `${target.toISOString()} is in the future`);
  const base = times.filter(([, t]) => new Date(t) <= target).pop();
  if (!base) {
    throw new RestoreImpossibleError(
      stack,
      `${target.toISOString()} is outside the recoverable window: the oldest snapshot ends at ${times[0]?.[1] ?? "(no snapshot yet)"}`,
    );
  }
  return { snapshot: base[0], time: target.toISOString() };
}

/**
 * Decides what happens to the database when `target` is applied on top of `live`. Raises
 * {@link ApprovalRequiredError} when a restore is needed without `approveDataLoss`, and
 * {@link RestoreImpossibleError} when no snapshot or time can serve it.
 */
export function planDatabase(
  stack: string,
  op: "deploy" | "rollback",
  target: VersionDatabase,
  versions: VersionDatabase[],
  live: LiveDatabase,
  request: DatabaseRequest,
): DatabaseDecision {
  const bySchema = migrationsBySchema(versions);
  const liveSchema = live.plan?.schema ?? 0;
  const snapshots = [...(live.plan?.snapshots ?? [])];
  const ups = (upTo: number) =>
    [...bySchema.entries()]
      .filter(([s]) => s <= upTo)
      .sort((a, b) => a[0] - b[0])
      .map(([schema, v]) => ({ schema, name: v.spec.migration!.name, sql: v.up as string }));
  const base = { snapshots, restore: live.plan?.restore, downs: [] as MigrationStep[] };
  const notes: string[] = [];
  const warnings: string[] = [];

  if (request.restore) {
    const restore = resolveRestore(stack, live, request.restore, request.now);
    if (!request.approveDataLoss && !request.previewOnly) throw new ApprovalRequiredError(stack, "a point-in-time restore", "--approve-data-loss");
    if (!request.approveDataLoss) warnings.push("applying this needs --approve-data-loss");
    const window = { from: restore.time, to: request.now.toISOString() };
    warnings.push(`point-in-time restore to ${restore.time} from snapshot ${restore.snapshot}: data written from ${window.from} to now is lost`);
    return {
      plan: { ...base, schema: liveSchema, migrations: ups(liveSchema), restore, policy: "point-in-time-restore" },
      notes: [`the app is pointed at a database restored to ${restore.time}`],
      warnings,
      dataLossWindow: window,
    };
  }

  const want = target.spec.schema;
  if (want >= liveSchema) {
    const crossing = [...bySchema.entries()].filter(([s]) => s > liveSchema && s <= want).map(([, v]) => v);
    const incompatible = crossing.filter((v) => !v.spec.backwardCompatible);
    let takeSnapshot: string | undefined;
    if (incompatible.length && !snapshots.some((s) => s.name === snapshotNameFor(target.version))) {
      takeSnapshot = snapshotNameFor(target.version);
      snapshots.push({ name: takeSnapshot, version: target.version });
      notes.push(`snapshot ${takeSnapshot} is taken before migrating (${incompatible.map((v) => v.spec.migration!.name).join(", ")} is not backward compatible)`);
    }
    if (want > liveSchema) notes.push(`schema ${liveSchema} -> ${want}: ${crossing.map((v) => v.spec.migration!.name).join(", ")}`);
    return {
      plan: { ...base, snapshots, schema: want, migrations: ups(want), takeSnapshot, policy: want > liveSchema ? "migrate" : "unchanged" },
      notes,
      warnings,
    };
  }

  // Going back to an older schema: the runbooks' policy, in order.
  const between = [...bySchema.entries()].filter(([s]) => s > want && s <= liveSchema).sort((a, b) => b[0] - a[0]);
  if (between.every(([, v]) => v.spec.backwardCompatible)) {
    notes.push(`${target.version} works with schema ${liveSchema} (expand/contract): the database is left alone`);
    return { plan: { ...base, schema: liveSchema, migrations: ups(liveSchema), policy: "expand-contract" }, notes, warnings };
  }
  if (between.every(([, v]) => v.down !== undefined)) {
    const takeSnapshot = `pre-down-${target.version}-from-${liveSchema}`;
    const downs = between.map(([schema, v]) => ({ schema, name: v.spec.migration!.name, sql: v.down as string }));
    notes.push(`snapshot ${takeSnapshot} is taken, then down migrations run: ${downs.map((d) => d.name).join(", ")}`);
    warnings.push(`down migrations ${downs.map((d) => d.name).join(", ")} drop what schema ${liveSchema} added: data held only there is lost`);
    return {
      plan: {
        ...base,
        snapshots: [...snapshots.filter((s) => s.name !== takeSnapshot), { name: takeSnapshot, version: target.version }],
        schema: want,
        migrations: ups(want),
        downs,
        takeSnapshot,
        policy: "down-migration",
      },
      notes,
      warnings,
    };
  }
  const firstBad = between.filter(([, v]) => !v.spec.backwardCompatible).pop()![1];
  const snapshot = snapshotNameFor(firstBad.version);
  const time = live.snapshotTimes[snapshot];
  if (!time) {
    throw new RestoreImpossibleError(stack, `no snapshot ${snapshot} to restore from; restore to a time with \`stackpin restore --to-time\``);
  }
  if (!request.approveDataLoss && request.previewOnly) warnings.push("applying this needs --approve-data-loss");
  else if (!request.approveDataLoss) {
    throw new ApprovalRequiredError(
      stack,
      `rolling back to ${target.version} needs a point-in-time restore to ${time} (${firstBad.spec.migration!.name} has no down migration); data written since then is lost`,
      "--approve-data-loss",
    );
  }
  const window = { from: time, to: request.now.toISOString() };
  warnings.push(`${firstBad.spec.migration!.name} has no down migration: point-in-time restore to ${time}, just before ${firstBad.version}; data written from ${window.from} to now is lost`);
  notes.push(`the app is pointed at a database restored from ${snapshot} to ${time}`);
  return {
    // The restored database is at the schema from before the bad migration; anything older stays (expand/contract).
    plan: {
      ...base,
      schema: Math.max(want, firstBad.spec.schema - 1),
      migrations: ups(Math.max(want, firstBad.spec.schema - 1)),
      restore: { snapshot, time },
      policy: "point-in-time-restore",
    },
    notes,
    warnings,
    dataLossWindow: window,
  };
}
