/**
 * The database side of an apply, as data: which schema to converge to, which migrations to run, which
 * snapshots to take and keep, and whether to restore to a point in time. The rollback policy follows the
 * runbooks, in order: (1) if the old release works with the current schema (expand/contract), leave the
 * database alone; (2) if every migration in between has a down, take a fresh snapshot and run the downs;
 * (3) otherwise restore to just before the bad deploy (point-in-time restore), only with approval.
 */
import { BackupNotRemovableError, DataLossApprovalRequiredError, RestoreImpossibleError } from "../errors";
import type { DatabaseSpec } from "../versions/schema";

/** One migration with its SQL, as handed to the program. */
export interface MigrationStep {
  schema: number;
  name: string;
  sql: string;
}

/** A point-in-time restore: a new database instance, made from a base backup and archived WAL. */
export interface RestoreSpec {
  /** The base backup (a snapshot) the restore starts from. */
  snapshot: string;
  /** The recovery target time (ISO); the snapshot's own time means "as the snapshot holds it". */
  time: string;
}

/** The database instance that is not a restore: the primary named in `stack.yaml`. */
export const PRIMARY = "primary";

/** A base backup the stack keeps, and the instance it was taken from. */
export interface SnapshotRecord {
  name: string;
  /** The version it was taken before. */
  version: string;
  /** `primary` or the name of the restored instance that was live when it was taken. */
  source: string;
  /**
   * The schema the database was at when it was taken: what a restore from it must hold (a target that
   * checks restores compares it). Absent in records written before it was kept.
   */
  schema?: number;
  /**
   * The revision of the update that took it. A target names the snapshot's object by it, so a retry of a
   * failed apply takes a snapshot of its own instead of finding the failed attempt's. Absent in records
   * written before it was kept.
   */
  attempt?: number;
}

/** A restored instance the stack keeps (or kept: `removed`), named by its base backup and time. */
export interface RestoreRecord extends RestoreSpec {
  /** The resource's name: `restore-<snapshot>-<time digits>`. */
  name: string;
  /** The instance whose history it recovers: the one live at `time`. */
  source: string;
  /** When it took over as the stack's live database (from the program's outputs once known). */
  liveFrom?: string;
  /** Removed by an approved retention step: no longer declared, kept so times in its span are refused. */
  removed?: boolean;
}

/** What the program is asked to make true about the database (the `stackpin:database` config). */
export interface DatabasePlan {
  /** The schema after the apply. */
  schema: number;
  /** Every known up migration up to `schema`, ascending; the program runs those not yet applied. */
  migrations: MigrationStep[];
  /** Down migrations to run this time, descending; empty unless the policy is `down-migration`. */
  downs: MigrationStep[];
  /** Every snapshot the stack keeps, the new one included; carried from the stack's record, never from the version. */
  snapshots: SnapshotRecord[];
  /** The snapshot taken in this apply (from the live instance), before any migration runs. */
  takeSnapshot?: string;
  /** Every restored instance the stack made, oldest first; all but the `removed` ones keep running. */
  restores: RestoreRecord[];
  /** The instance the app and the migrations use: `primary` or a restore's name. */
  live: string;
  /** The restore made in this apply, if any. */
  restore?: RestoreRecord;
  /** The snapshot or restored instance an approved retention step removes in this apply. */
  remove?: string;
  policy: "unchanged" | "migrate" | "expand-contract" | "down-migration" | "point-in-time-restore" | "retention";
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
  /** When each restored instance took over, from the program's `databaseInstances` output. */
  liveFrom?: Record<string, string>;
}

/** What the user asked for beyond the version. */
export interface DatabaseRequest {
  /** Restore to this time (ISO) or to this snapshot's time. */
  restore?: { time?: string; snapshot?: string };
  /** Remove this snapshot or restored instance (a retention step; needs `approveDataLoss`). */
  remove?: string;
  /** The explicit approval a restore (and its data loss) needs. */
  approveDataLoss?: boolean;
  /** Planning for a preview: a missing approval becomes a warning instead of an error. */
  previewOnly?: boolean;
  now: Date;
  /** The revision the apply will be (the newest plus one): recorded in a snapshot it takes. */
  revision?: number;
}

/** The snapshot taken before applying an incompatible `version`. */
export function snapshotNameFor(version: string): string {
  return `pre-${version}`;
}

/** `base`, or `base-2`, `base-3`... when the stack already keeps one by that name: a snapshot is never retaken. */
function freshName(base: string, taken: Array<{ name: string }>): string {
  const names = new Set(taken.map((t) => t.name));
  let name = base;
  for (let n = 2; names.has(name); n++) name = `${base}-${n}`;
  return name;
}

/** The resource name of a restore: by its base backup and target time, so each restore is its own instance. */
export function restoreNameFor(snapshot: string, time: string): string {
  return `restore-${snapshot}-${time.replace(/[^0-9]/g, "")}`;
}

/** The stack's database record in today's shape (records written before restores chained have no `restores`). */
export function normalizePlan(plan: DatabasePlan | undefined): DatabasePlan | undefined {
  if (!plan) return undefined;
  const legacy = plan as DatabasePlan & { restore?: RestoreSpec & { name?: string } };
  const restores = plan.restores ?? (legacy.restore ? [{ ...legacy.restore, name: legacy.restore.name ?? "restore", source: PRIMARY }] : []);
  return {
    ...plan,
    snapshots: plan.snapshots.map((s) => ({ ...s, source: s.source ?? PRIMARY })),
    restores,
    live: plan.live ?? (restores.length ? restores[restores.length - 1].name : PRIMARY),
  };
}

function migrationsBySchema(versions: VersionDatabase[]): Map<number, VersionDatabase> {
  const map = new Map<number, VersionDatabase>();
  for (const v of versions) {
    if (v.spec.migration && !map.has(v.spec.schema)) map.set(v.spec.schema, v);
  }
  return map;
}

/** The instance that was the stack's live database at `time`: the newest restore that had taken over by then. */
function liveAt(restores: RestoreRecord[], time: Date): RestoreRecord | undefined {
  return restores.filter((r) => r.liveFrom && new Date(r.liveFrom) <= time).sort((a, b) => a.liveFrom!.localeCompare(b.liveFrom!)).pop();
}

/**
 * The newest base backup from which `instance`'s history at `target` can be replayed: one taken from the
 * instance itself before `target`, or from an instance it descends from before the moment it branched off.
 */
function baseBackupFor(plan: DatabasePlan, times: Record<string, string>, instance: string, target: Date): SnapshotRecord | undefined {
  const candidates: SnapshotRecord[] = [];
  let current: string | undefined = instance;
  let cutoff = target;
  while (current) {
    const at = cutoff;
    const from = current;
    candidates.push(...plan.snapshots.filter((s) => s.source === from && times[s.name] && new Date(times[s.name]) <= at));
    const restore = plan.restores.find((r) => r.name === current);
    if (!restore) break;
    current = restore.source;
    cutoff = new Date(Math.min(cutoff.getTime(), new Date(restore.time).getTime()));
  }
  return candidates.sort((a, b) => times[a.name].localeCompare(times[b.name])).pop();
}

function resolveRestore(
  stack: string,
  plan: DatabasePlan,
  live: LiveDatabase,
  request: NonNullable<DatabaseRequest["restore"]>,
  now: Date,
): RestoreRecord {
  const times = live.snapshotTimes;
  const known = plan.snapshots.filter((s) => times[s.name]).map((s) => s.name);
  if (request.snapshot) {
    const snap = plan.snapshots.find((s) => s.name === request.snapshot);
    const time = times[request.snapshot];
    if (!snap || !time) throw new RestoreImpossibleError(stack, `snapshot ${request.snapshot} does not exist; known: ${known.join(", ") || "(none)"}`);
    const at = request.time ?? time;
    return { name: restoreNameFor(snap.name, at), snapshot: snap.name, time: at, source: snap.source };
  }
  const target = new Date(request.time as string);
  if (Number.isNaN(target.getTime())) throw new RestoreImpossibleError(stack, `"${request.time}" is not a time (use ISO 8601, e.g. 2026-11-24T05:30:00Z)`);
  if (target > now) throw new RestoreImpossibleError(stack, `${target.toISOString()} is in the future`);
  const owner = liveAt(plan.restores, target);
  if (owner?.removed) {
    throw new RestoreImpossibleError(stack, `${target.toISOString()} is when ${owner.name} was live, and it was removed by a retention step`);
  }
  const instance = owner?.name ?? PRIMARY;
  const base = baseBackupFor(plan, times, instance, target);
  if (!base) {
    const oldest = Object.values(times).sort()[0];
    throw new RestoreImpossibleError(
      stack,
      `${target.toISOString()} is outside the recoverable window: no base backup of ${instance} (or of what it was restored from) ends before it; the oldest snapshot ends at ${oldest ?? "(no snapshot yet)"}`,
    );
  }
  return { name: restoreNameFor(base.name, target.toISOString()), snapshot: base.name, time: target.toISOString(), source: instance };
}

/** Removes `name` (a snapshot or a restored instance that is not live) from the record, or refuses. */
function retention(stack: string, plan: DatabasePlan, name: string): { plan: DatabasePlan; note: string } {
  if (plan.snapshots.some((s) => s.name === name)) {
    return { plan: { ...plan, snapshots: plan.snapshots.filter((s) => s.name !== name) }, note: `snapshot ${name} (its base backup) is deleted` };
  }
  const restore = plan.restores.find((r) => r.name === name && !r.removed);
  if (!restore) {
    const known = [...plan.snapshots.map((s) => s.name), ...plan.restores.filter((r) => !r.removed && r.name !== plan.live).map((r) => r.name)];
    throw new BackupNotRemovableError(stack, name, `it is neither a snapshot nor a restored database the stack keeps; known: ${known.join(", ") || "(none)"}`);
  }
  if (restore.name === plan.live) throw new BackupNotRemovableError(stack, name, "it is the live database the app uses");
  return {
    plan: { ...plan, restores: plan.restores.map((r) => (r.name === name ? { ...r, removed: true } : r)) },
    note: `restored database ${name} is stopped and its data directory deleted (its archived WAL stays until destroy)`,
  };
}

/**
 * Decides what happens to the database when `target` is applied on top of `live`. Raises
 * {@link DataLossApprovalRequiredError} when a restore or a removal is needed without `approveDataLoss`, and
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
  // The record of what exists comes from the stack, never from the target version: a version without a
  // `database:` section keeps every snapshot and restored instance declared.
  const record = normalizePlan(live.plan);
  const liveSchema = record?.schema ?? 0;
  // When a restore took over: the program's own report wins over the time it was planned at.
  const restores = (record?.restores ?? []).map((r) => ({ ...r, liveFrom: live.liveFrom?.[r.name] ?? r.liveFrom }));
  const current: DatabasePlan = {
    schema: liveSchema,
    migrations: [],
    downs: [],
    snapshots: [...(record?.snapshots ?? [])],
    restores,
    live: record?.live ?? PRIMARY,
    policy: "unchanged",
  };
  const snapshots = current.snapshots;
  const ups = (upTo: number) =>
    [...bySchema.entries()]
      .filter(([s]) => s <= upTo)
      .sort((a, b) => a[0] - b[0])
      .map(([schema, v]) => ({ schema, name: v.spec.migration!.name, sql: v.up as string }));
  const base = { snapshots, restores, live: current.live, downs: [] as MigrationStep[] };
  const notes: string[] = [];
  const warnings: string[] = [];
  const needsApproval = (what: string) => {
    if (!request.approveDataLoss && !request.previewOnly) throw new DataLossApprovalRequiredError(stack, what);
    if (!request.approveDataLoss) warnings.push("applying this needs --approve-data-loss");
  };
  // The same base backup and time again still makes a new instance: the earlier one has had writes since.
  const restoreInto = (asked: RestoreRecord) => {
    const restore = { ...asked, name: freshName(asked.name, restores), liveFrom: request.now.toISOString() };
    return { restores: [...restores, restore], live: restore.name, restore };
  };

  if (request.remove) {
    const removed = retention(stack, { ...current, ...base, migrations: ups(liveSchema) }, request.remove);
    needsApproval(`removing ${request.remove}`);
    warnings.push(`${removed.note}: this cannot be undone`);
    return { plan: { ...removed.plan, remove: request.remove, policy: "retention" }, notes: [removed.note], warnings };
  }

  if (request.restore) {
    const made = restoreInto(resolveRestore(stack, current, live, request.restore, request.now));
    const restore = made.restore;
    needsApproval("a point-in-time restore");
    const window = { from: restore.time, to: request.now.toISOString() };
    warnings.push(`point-in-time restore of ${restore.source} to ${restore.time} from snapshot ${restore.snapshot}: data written from ${window.from} to now is lost`);
    return {
      plan: { ...base, schema: liveSchema, migrations: ups(liveSchema), ...made, policy: "point-in-time-restore" },
      notes: [
        `the app is pointed at a new database ${restore.name}, restored to ${restore.time}; ${current.live} keeps running until removed with \`stackpin snapshot rm\``,
      ],
      warnings,
      dataLossWindow: window,
    };
  }

  const want = target.spec.schema;
  if (want >= liveSchema) {
    const crossing = [...bySchema.entries()].filter(([s]) => s > liveSchema && s <= want).map(([, v]) => v);
    const incompatible = crossing.filter((v) => !v.spec.backwardCompatible);
    let takeSnapshot: string | undefined;
    if (incompatible.length) {
      takeSnapshot = freshName(snapshotNameFor(target.version), snapshots);
      snapshots.push({ name: takeSnapshot, version: target.version, source: current.live, schema: liveSchema, ...(request.revision ? { attempt: request.revision } : {}) });
      notes.push(`snapshot ${takeSnapshot} is taken from ${current.live} before migrating (${incompatible.map((v) => v.spec.migration!.name).join(", ")} is not backward compatible)`);
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
    const takeSnapshot = freshName(`pre-down-${target.version}-from-${liveSchema}`, snapshots);
    const downs = between.map(([schema, v]) => ({ schema, name: v.spec.migration!.name, sql: v.down as string }));
    notes.push(`snapshot ${takeSnapshot} is taken from ${current.live}, then down migrations run: ${downs.map((d) => d.name).join(", ")}`);
    warnings.push(`down migrations ${downs.map((d) => d.name).join(", ")} drop what schema ${liveSchema} added: data held only there is lost`);
    return {
      plan: {
        ...base,
        snapshots: [...snapshots, { name: takeSnapshot, version: target.version, source: current.live, schema: liveSchema, ...(request.revision ? { attempt: request.revision } : {}) }],
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
  // The newest snapshot taken before the bad version: after a restore, the one from the restored primary.
  const snap = snapshots
    .filter((s) => s.version === firstBad.version && live.snapshotTimes[s.name])
    .sort((a, b) => live.snapshotTimes[a.name].localeCompare(live.snapshotTimes[b.name]))
    .pop();
  if (!snap) {
    throw new RestoreImpossibleError(stack, `no snapshot ${snapshotNameFor(firstBad.version)} to restore from; restore to a time with \`stackpin restore --to-time\``);
  }
  const time = live.snapshotTimes[snap.name];
  // Said, not silent: a version applied more than once (a retry after a failure) has a snapshot per attempt.
  const others = snapshots.filter((s) => s.version === firstBad.version && s.name !== snap.name);
  if (others.length) {
    notes.push(`${snap.name} is the newest of the snapshots taken before ${firstBad.version} (${time}); ${others.map((s) => s.name).join(", ")}, from ${others.length === 1 ? "an earlier attempt, is" : "earlier attempts, are"} kept and not used`);
  }
  if (!request.approveDataLoss && request.previewOnly) warnings.push("applying this needs --approve-data-loss");
  else if (!request.approveDataLoss) {
    throw new DataLossApprovalRequiredError(
      stack,
      `rolling back to ${target.version} needs a point-in-time restore to ${time} (${firstBad.spec.migration!.name} has no down migration); data written since then is lost`,
    );
  }
  const window = { from: time, to: request.now.toISOString() };
  const made = restoreInto({ name: restoreNameFor(snap.name, time), snapshot: snap.name, time, source: snap.source });
  const restore = made.restore;
  warnings.push(`${firstBad.spec.migration!.name} has no down migration: point-in-time restore to ${time}, just before ${firstBad.version}; data written from ${window.from} to now is lost`);
  notes.push(`the app is pointed at a new database ${restore.name} restored from ${snap.name} (taken from ${snap.source}) to ${time}; ${current.live} keeps running until removed`);
  return {
    // The restored database is at the schema from before the bad migration; anything older stays (expand/contract).
    plan: {
      ...base,
      schema: Math.max(want, firstBad.spec.schema - 1),
      migrations: ups(Math.max(want, firstBad.spec.schema - 1)),
      ...made,
      policy: "point-in-time-restore",
    },
    notes,
    warnings,
    dataLossWindow: window,
  };
}
