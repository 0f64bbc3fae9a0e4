/**
 * What an apply sets, computed once and purely from the world as read (history, outputs, the checkpoint's
 * resources), the version, the stack's own config, the versions' database sections and a clock: the
 * value that is previewed, approved (its digest), and applied.
 */
import type { StackSettingsConfigValue } from "@pulumi/pulumi/automation";
import { DatabaseDecision, DatabaseRequest, planDatabase, VersionDatabase } from "./database";
import type { StackOutput } from "../engine/types";
import { HistoryEntry, liveState } from "../records/history-record";
import { describeMove, nextLayout, RolloutLayout, RolloutMove } from "./rollout";
import { forwardOnly, Generations } from "./secret-generations";
import type { VersionFile } from "../versions/schema";
import { CheckpointResource, databaseAsLeft, DatabaseAsLeft } from "./database-left";
import { plainPasswordWarnings } from "./database-url";

/** The stack facts a plan needs: its name, its Pulumi project, and `stack.yaml`'s config. */
export interface StackFacts {
  name: string;
  project: string;
  config: Record<string, unknown>;
}

/** The world as read before planning. */
export interface PlanningWorld {
  /** The whole history, newest first. */
  history: HistoryEntry[];
  /** The stack's outputs (secrets masked). */
  outputs: Record<string, StackOutput>;
  /** The checkpoint's resources. */
  resources: CheckpointResource[];
}

/** Everything stackpin applies for a version: its config, and the layout and secrets it derives. */
export interface DesiredState {
  config: Record<string, StackSettingsConfigValue>;
  rollout: RolloutLayout;
  move: RolloutMove;
  generations: Generations;
  /** The database decision, when the version declares a database section. */
  database?: DatabaseDecision;
  /** Sentences for the preview about the layout, the secrets and the database. */
  notes: string[];
  /** The notes a reviewer must not miss (a secret kept back). */
  warnings: string[];
  /** The database as the whole past left it (failed updates included), which the plan started from. */
  databaseLeft?: DatabaseAsLeft;
}

/** A version's config without its secrets (`secure:` values): what a slot runs with, as the layout records it. */
export function plainConfig(version: VersionFile): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(version.config).filter(([, v]) => !(typeof v === "object" && v !== null && "secure" in v)),
  );
}

/** A version's secret generations, by secret name. */
export function generationsOf(version: VersionFile): Generations {
  return Object.fromEntries(Object.entries(version.secrets).map(([k, v]) => [k, v.generation]));
}

/** Options that reach the database decision from deploy, rollback and restore. */
export interface DatabaseOptions {
  /** Approves the data loss of a point-in-time restore (a rollback past an irreversible migration, or `restore`). */
  approveDataLoss?: boolean;
  /** Restore the database to this time or snapshot (the `restore` operation). */
  restore?: { time?: string; snapshot?: string };
  /** Remove this snapshot or restored database (`snapshot rm`, a retention step needing `approveDataLoss`). */
  remove?: string;
  /** Planning for a preview: missing approvals are reported, not raised. */
  previewOnly?: boolean;
}

/** The times each snapshot's base backup ended, from the program's `databaseSnapshots` output. */
function snapshotTimes(outputs: Record<string, StackOutput>): Record<string, string> {
  const snaps = (outputs.databaseSnapshots?.value ?? {}) as Record<string, { takenAt?: string }>;
  return Object.fromEntries(Object.entries(snaps).flatMap(([n, s]) => (s.takenAt ? [[n, s.takenAt]] : [])));
}

/** When each restored instance took over, from the program's `databaseInstances` output. */
function liveFromTimes(outputs: Record<string, StackOutput>): Record<string, string> {
  const instances = (outputs.databaseInstances?.value ?? {}) as Record<string, { liveFrom?: string }>;
  return Object.fromEntries(Object.entries(instances).flatMap(([n, i]) => (i.liveFrom ? [[n, i.liveFrom]] : [])));
}

/**
 * The stack config for applying `target` after the world as read: the stack-wide and version config
 * (keys qualified with the project), plus `stackpin:version`, the blue/green layout, the forward-only
 * secret generations, the verification settings and the database plan. Pure: the version files' database
 * sections and the clock are passed in; raises the database plan's typed refusals.
 */
export function planDesiredState(
  stack: StackFacts,
  op: "deploy" | "rollback" | "restore",
  target: VersionFile,
  world: PlanningWorld,
  /** Every version's database section with its SQL (needed when the stack or the target has a database). */
  versions: VersionDatabase[],
  dbOptions: DatabaseOptions,
  now: Date,
): DesiredState {
  const { history, outputs, resources } = world;
  const project = stack.project;
  const live = liveState(history);
  const { layout, move } = nextLayout(live.rollout, { version: target.version, config: plainConfig(target) }, op === "rollback" ? "rollback" : "deploy");
  // A failed update after the last success may have generated (and used) a newer secret: never go below it.
  const generationsLeft = generationsAsLeft(history);
  const secrets = forwardOnly(
    generationsOf(target),
    generationsLeft,
    target.version,
  );
  const config: Record<string, StackSettingsConfigValue> = {};
  for (const [key, value] of Object.entries({ ...stack.config, ...target.config })) {
    config[key.includes(":") ? key : `${project}:${key}`] = value;
  }
  config["stackpin:version"] = target.version;
  config["stackpin:rollout"] = JSON.stringify(layout);
  config["stackpin:secrets"] = JSON.stringify(secrets.generations);
  config["stackpin:verify"] = JSON.stringify(target.verify);
  let database: DatabaseDecision | undefined;
  // The database as the whole past left it: a failed update's snapshot and migration count.
  const left = databaseAsLeft(history, resources);
  const notes: string[] = [];
  if (left.moved) {
    const m = left.moved;
    notes.push(`revision ${m.revision}${m.version ? ` (${m.version})` : ""} failed after its migration ran: the database is at schema ${m.schemaTo}, not ${m.schemaFrom}${m.snapshot ? `; snapshot ${m.snapshot} holds it as it was before` : ""}`);
  }
  for (const name of left.keptFromFailed) notes.push(`snapshot ${name}, taken by an update that failed, is kept`);
  // Declared whenever the stack holds a database, whatever the target version says: snapshots and restored
  // instances leave only by an approved removal, never because a version lacks a `database:` section.
  if (target.database || dbOptions.restore || dbOptions.remove || left.plan) {
    const targetDb = target.database
      ? versions.find((v) => v.version === target.version)!
      : { version: target.version, spec: { schema: left.plan?.schema ?? 0, backwardCompatible: true } };
    const request: DatabaseRequest = { ...dbOptions, now, revision: (history[0]?.revision ?? 0) + 1 };
    const times = { ...snapshotTimes(outputs), ...left.snapshotTimes };
    // A rollback is also what follows a failed deploy that moved the schema: back down from where it is.
    const direction = op === "rollback" ? "rollback" : "deploy";
    database = planDatabase(stack.name, direction, targetDb, versions, { plan: left.plan, snapshotTimes: times, liveFrom: liveFromTimes(outputs) }, request);
    config["stackpin:database"] = JSON.stringify(database.plan);
    if (op === "deploy" && live.version && live.version !== target.version && !live.failed) {
      notes.push(wayBackAfter(stack.name, live.version, left.plan?.schema ?? 0, database, versions, times, now));
    }
  }
  return {
    config,
    rollout: layout,
    move,
    generations: secrets.generations,
    database,
    databaseLeft: left,
    notes: [describeMove(move, live.rollout, layout, risingGenerations(secrets.generations, live.secretGenerations)), ...secrets.notes, ...(database?.notes ?? [])],
    warnings: [
      ...notes,
      ...secrets.notes.filter((n) => /never roll back/.test(n)),
      ...(database?.warnings ?? []),
      ...plainPasswordWarnings({ ...stack.config, ...target.config }, project),
    ],
  };
}

/**
 * After a deploy, how the stack could go back to the version it replaces: the database path the rollback
 * planner would choose from the state this deploy leaves (with the snapshot it takes), in one sentence.
 */
export function wayBackAfter(
  stack: string,
  liveVersion: string,
  liveSchema: number,
  deploy: DatabaseDecision,
  versions: VersionDatabase[],
  times: Record<string, string>,
  now: Date,
): string {
  const back = versions.find((v) => v.version === liveVersion) ?? { version: liveVersion, spec: { schema: liveSchema, backwardCompatible: true } };
  const taken = deploy.plan.takeSnapshot ? { [deploy.plan.takeSnapshot]: now.toISOString() } : {};
  try {
    const d = planDatabase(stack, "rollback", back, versions, { plan: deploy.plan, snapshotTimes: { ...times, ...taken } }, { previewOnly: true, now });
    const how =
      d.plan.policy === "point-in-time-restore" && d.plan.restore
        ? `needs a point-in-time restore from snapshot ${d.plan.restore.snapshot}${deploy.plan.takeSnapshot === d.plan.restore.snapshot ? " (taken by this deploy)" : ""} and --approve-data-loss: data written after it is lost`
        : d.plan.policy === "down-migration"
          ? `runs down migrations ${d.plan.downs.map((x) => x.name).join(", ")} (after a fresh snapshot)`
          : `leaves the database alone (${liveVersion} works with schema ${d.plan.schema})`;
    return `way back after this deploy: a rollback to ${liveVersion} ${how}`;
  } catch (err) {
    return `way back after this deploy: NO rollback to ${liveVersion} without a manual restore (${(err as Error).message.split("\n")[0]})`;
  }
}

/** The secrets whose generation differs from what the last success ran (`apiKey generation 2`): the slots move to them. */
export function risingGenerations(generations: Generations, live: Generations | undefined): string[] {
  return Object.entries(generations)
    .filter(([name, g]) => live !== undefined && live[name] !== g)
    .map(([name, g]) => `${name} generation ${g}`);
}

/**
 * The secret generations the past left: the last success's, raised by any failed update after it (which
 * may have generated the newer secret and handed it out before it failed). Forward-only applies to them.
 */
export function generationsAsLeft(history: HistoryEntry[]): Generations | undefined {
  const live = liveState(history);
  let out = live.secretGenerations ? { ...live.secretGenerations } : undefined;
  for (const h of history) {
    if (live.revision !== undefined && h.revision <= live.revision) break;
    if (h.result !== "failed" || !h.secretGenerations) continue;
    out ??= {};
    for (const [name, g] of Object.entries(h.secretGenerations)) out[name] = Math.max(out[name] ?? 0, g);
  }
  return out;
}
