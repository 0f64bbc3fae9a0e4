/**
 * The database as the stack's whole past left it, not as the newest successful update planned it: an
 * update that failed after its snapshot was taken or its migration ran still moved the database, and the
 * next plan (a rollback above all) must start from there, as Atlas plans a down migration from the
 * database's actual state.
 */
import { DatabasePlan, normalizePlan } from "./database";
import type { HistoryEntry } from "../records/history-record";
import { liveState } from "../records/history-record";

/** A resource as the backend's checkpoint holds it: its URN, type and outputs (secret outputs encrypted). */
export interface CheckpointResource {
  urn: string;
  type: string;
  outputs: Record<string, unknown>;
}

/** What a failed update left in the database, when it left anything. */
export interface FailedDatabaseChange {
  /** The failed update. */
  revision: number;
  version?: string;
  /** The schema before it (the last success's) and the schema its migration reached. */
  schemaFrom: number;
  schemaTo: number;
  /** The snapshot it took before migrating, when it took one. */
  snapshot?: string;
}

/** The database as left: the plan the next apply starts from, and the snapshot times the state holds. */
export interface DatabaseAsLeft {
  /** The last success's plan, with the snapshots and schema failed updates after it left; undefined when no database. */
  plan?: DatabasePlan;
  /** When each snapshot's base backup ended, by name: from the checkpoint's snapshot resources. */
  snapshotTimes: Record<string, string>;
  /** The failed update that moved the schema, when one did. */
  moved?: FailedDatabaseChange;
  /** Snapshots taken by failed updates: kept like any other (they may be the only copy of what a migration dropped). */
  keptFromFailed: string[];
}

const snapshotType = /:PostgresSnapshot$/;
const migrationType = /:SchemaMigration$/;

function nameOf(urn: string): string {
  return urn.split("::").pop() ?? urn;
}

/** The schema the checkpoint's migration resource reached, when the program keeps one. */
export function schemaInState(resources: CheckpointResource[]): number | undefined {
  const m = resources.find((r) => migrationType.test(r.type));
  const applied = m?.outputs.applied;
  return typeof applied === "number" ? applied : undefined;
}

/** Snapshot names the checkpoint holds, with when each was taken. */
export function snapshotsInState(resources: CheckpointResource[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const r of resources.filter((x) => snapshotType.test(x.type))) {
    const name = typeof r.outputs.name === "string" ? r.outputs.name : nameOf(r.urn).replace(/^snapshot-/, "");
    out[name] = typeof r.outputs.takenAt === "string" ? r.outputs.takenAt : "";
  }
  return out;
}

/**
 * Reads the database as the past left it (pure). `history` is newest first and whole; `resources` the
 * checkpoint's. Failed updates newer than the last success are read oldest first: a snapshot one took that
 * the state holds is kept, and a schema its migration reached (the state's migration resource says so)
 * becomes the schema the next plan starts from.
 */
export function databaseAsLeft(history: HistoryEntry[], resources: CheckpointResource[]): DatabaseAsLeft {
  const live = liveState(history);
  let plan = normalizePlan(live.database);
  const inState = snapshotsInState(resources);
  const snapshotTimes = Object.fromEntries(Object.entries(inState).filter(([, t]) => t));
  const failed = history.filter((h) => h.result === "failed" && h.database && (live.revision === undefined || h.revision > live.revision)).reverse();
  const keptFromFailed: string[] = [];
  let moved: FailedDatabaseChange | undefined;
  const stateSchema = schemaInState(resources);
  for (const f of failed) {
    const fp = normalizePlan(f.database)!;
    const known = new Set((plan?.snapshots ?? []).map((s) => s.name));
    const taken = fp.snapshots.filter((s) => !known.has(s.name) && s.name in inState);
    const schemaMoved = stateSchema !== undefined && stateSchema === fp.schema && stateSchema !== (plan?.schema ?? 0);
    if (!taken.length && !schemaMoved) continue;
    keptFromFailed.push(...taken.map((s) => s.name));
    const base: DatabasePlan = plan ?? { ...fp, snapshots: [], restores: [], downs: [], takeSnapshot: undefined, restore: undefined, remove: undefined, live: fp.live };
    if (schemaMoved) moved = { revision: f.revision, version: f.to, schemaFrom: base.schema, schemaTo: fp.schema, snapshot: fp.takeSnapshot && fp.takeSnapshot in inState ? fp.takeSnapshot : undefined };
    plan = {
      ...base,
      ...(schemaMoved ? { schema: fp.schema, migrations: fp.migrations } : {}),
      snapshots: [...base.snapshots, ...taken],
      takeSnapshot: undefined,
      downs: [],
      restore: undefined,
      remove: undefined,
    };
  }
  return { plan, snapshotTimes, moved, keptFromFailed };
}
