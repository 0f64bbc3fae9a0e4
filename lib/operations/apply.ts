import type { EngineStack, ResourceStep, StackOutput } from "../engine/stack";
import { EnvironmentContext, progressBridge, ProgressOptions } from "../environment";
import * as fs from "node:fs";
import * as path from "node:path";
import type { VersionDatabase } from "../planning/database";
import {
  ApplyFailedError,
  DatabaseApplyFailedError,
  DatabaseUnavailableError,
  EngineFailedError,
  engineErrorLines as engineFailure,
  HealthGateFailedError,
  InvalidVersionFileError,
  NeverReadyError,
  RestoreImpossibleError,
  StackpinError,
  StalePlanError,
} from "../errors";
import {
  ApplyRecord,
  encodeRecord,
  HistoryEntry,
  liveState,
  newUpdateId,
  toHistoryEntries,
} from "../records/history-record";
import { readRecords, RecordsEngine, recordStoreOf, StackRecords } from "../records/ledger";
import { planDigestFor } from "../policy/plan-digest";
import { verifyRelease, VerificationResult } from "../verify/verification";
import { diffConfig } from "../versions/config-diff";
import type { VersionFile } from "../versions/schema";
import type { Plan } from "./plan";
import { ranVersion } from "../planning/ran-version";
import { decodeRefusal } from "../engine/refusal";
import { CheckpointResource, schemaInState, snapshotsInState } from "../planning/database-left";
import { DatabaseOptions, DesiredState, planDesiredState } from "../planning/desired-state";

export type { DatabaseOptions, DesiredState } from "../planning/desired-state";

/** The result of a deploy or rollback that the engine completed. */
export interface ApplyResult {
  stack: string;
  op: "deploy" | "rollback" | "restore";
  from?: string;
  to: string;
  /** The new history entry's revision (Pulumi's update number). */
  revision: number;
  resourceChanges: ResourceStep[];
  changeSummary: Record<string, number>;
  /** Stack outputs after the apply; secret ones read `"[secret]"`. */
  outputs: Record<string, StackOutput>;
  /** Verification through the program's `endpoint` output; absent when the program exports none. */
  verification?: VerificationResult;
  /** What happened to the database, when the version declares one. */
  database?: { policy: string; schema: number; notes: string[]; warnings: string[]; dataLossWindow?: { from: string; to: string } };
  durationMs: number;
}

function readSql(ctx: EnvironmentContext, version: VersionFile, file: string | undefined): string | undefined {
  if (!file) return undefined;
  const full = path.resolve(ctx.stack.dir, file);
  if (!fs.existsSync(full)) {
    throw new InvalidVersionFileError(path.join(ctx.stack.dir, `${version.version}.yaml`), [`database.migration: ${file} does not exist`]);
  }
  return fs.readFileSync(full, "utf8");
}

/** Every version's database section with its SQL; unreadable version files are skipped, the target's is not. */
function versionDatabases(ctx: EnvironmentContext, target: VersionFile): VersionDatabase[] {
  const out: VersionDatabase[] = [];
  for (const name of ctx.stack.versions) {
    let version: VersionFile;
    try {
      version = name === target.version ? target : ctx.store.version(ctx.stack, name);
      if (!version.database) continue;
      out.push({
        version: name,
        spec: version.database,
        up: readSql(ctx, version, version.database.migration?.up),
        down: readSql(ctx, version, version.database.migration?.down),
      });
    } catch (err) {
      if (name === target.version || !(err instanceof StackpinError)) throw err;
    }
  }
  return out;
}

/**
 * The desired state of applying `target` after `history` ({@link planDesiredState}), with what planning
 * reads at the edge: every version's database section and SQL from the stack's files, and the clock.
 */
export function desiredState(
  ctx: EnvironmentContext,
  op: ApplyResult["op"],
  target: VersionFile,
  history: HistoryEntry[],
  outputs: Record<string, StackOutput>,
  dbOptions: DatabaseOptions = {},
  /** The checkpoint's resources: what failed updates left (a snapshot taken, a migration run) is read from them. */
  resources: CheckpointResource[] = [],
): DesiredState {
  const needsVersions = !!(target.database || dbOptions.restore || dbOptions.remove || history.some((h) => h.database));
  return planDesiredState(
    { name: ctx.stack.name, project: ctx.stack.project, config: ctx.stack.settings.config },
    op,
    target,
    { history, outputs, resources },
    needsVersions ? versionDatabases(ctx, target) : [],
    dbOptions,
    new Date(),
  );
}

/** Computes what applying `target` means on an open stack (it reads the stack's outputs); raises typed refusals. */
export async function prepareApply(
  ctx: EnvironmentContext,
  engine: EngineStack,
  op: ApplyResult["op"],
  target: VersionFile,
  history: HistoryEntry[],
  dbOptions: DatabaseOptions = {},
): Promise<DesiredState> {
  // The outputs and checkpoint read when the stack was opened: the stale-plan check before the update catches a change since.
  const { resources } = await engine.checkpoint({ reuse: true });
  return desiredState(ctx, op, target, history, await engine.outputs({ reuse: true }), dbOptions, resources);
}

/** Turns a program's database refusal ({@link decodeRefusal}) into the typed error, or returns undefined. */
export function programFailure(stackName: string, message: string): StackpinError | undefined {
  const refusal = decodeRefusal(message);
  if (refusal?.kind === "restore-impossible") return new RestoreImpossibleError(stackName, refusal.detail);
  if (refusal?.kind === "database-unavailable") return new DatabaseUnavailableError(stackName, refusal.detail);
  return undefined;
}

/**
 * Reads history, newest first, with verification outcomes from stackpin's records; returns the stack's
 * tags and records (freeze, baselines) too.
 */
export async function readHistoryAndTags(engine: RecordsEngine): Promise<{ history: HistoryEntry[]; tags: Record<string, string>; records: StackRecords }> {
  // One engine read (history) and the records document beside it, at once.
  const [updates, stored] = await Promise.all([engine.history(), recordStoreOf(engine).read()]);
  // The stack tags hold records only for an older stackpin whose tags were never moved into the document.
  const tags = stored.migratedFromTags ? {} : await engine.tags();
  const records = await readRecords(engine, tags, stored);
  return { history: toHistoryEntries(updates, records), tags, records };
}

/** Reads history (with verification outcomes from stackpin's records), newest first. */
export async function readHistory(engine: RecordsEngine): Promise<HistoryEntry[]> {
  return (await readHistoryAndTags(engine)).history;
}

/**
 * Previews applying `target` to an open engine stack: sets the stack's config to the version's and asks
 * the engine for a plan. Changes nothing in the backend.
 */
export async function planWith(
  ctx: EnvironmentContext,
  engine: EngineStack,
  op: Plan["op"],
  target: VersionFile,
  history: HistoryEntry[],
  progress: ProgressOptions,
  dbOptions: DatabaseOptions = {},
  /** The desired state already computed for the apply: the plan shows exactly what will be applied. */
  computed?: DesiredState,
  /** Warnings the caller found while choosing the target (a version file that differs from what ran). */
  extraWarnings: string[] = [],
): Promise<Plan> {
  const live = liveState(history);
  const warnings: string[] = [...extraWarnings];
  let before: VersionFile["config"] = {};
  if (live.version) {
    try {
      // The config diff is against what runs now, not against the live version's file as it may be now.
      const file = ctx.store.version(ctx.stack, live.version);
      before = ranVersion(history, file, ctx.stack.project, ctx.stack.settings.config)?.version.config ?? file.config;
    } catch (err) {
      if (!(err instanceof StackpinError)) throw err;
      warnings.push(`the live version ${live.version} has no readable file (${err.message.split("\n")[0]}); the config diff is against an empty config`);
    }
  }
  if (live.failed) {
    warnings.push(`the last apply (revision ${live.failed.revision}, ${live.failed.to}) failed: the stack may be partially at ${live.failed.to}`);
  }
  if (op === "rollback" && live.version === target.version) {
    warnings.push(`${target.version} is already live; the rollback re-applies it`);
  }
  if (op === "rollback" && !history.some((h) => h.to === target.version && h.result === "succeeded")) {
    warnings.push(`${target.version} was never applied to stack ${ctx.stack.name}`);
  }
  const desired = computed ?? (await prepareApply(ctx, engine, op, target, history, { ...dbOptions, previewOnly: true }));
  warnings.push(...desired.warnings);
  progress.onProgress?.({ type: "phase", phase: "preview", message: `previewing ${target.version} on ${ctx.stack.name}` });
  await engine.setConfig(desired.config);
  // A plan shown before an apply is saved as Pulumi's update plan, which that apply is held to.
  const planFile = computed ? engine.planFile() : undefined;
  const run = await previewOrExplain(ctx, engine, progress, planFile);
  for (const s of run.steps.filter((step) => step.op === "replace")) {
    warnings.push(`${s.name} will be replaced (${s.replaceKeys.length ? `${s.replaceKeys.join(", ")} changed` : "forced"})`);
  }
  if (run.steps.some((s) => s.op === "delete")) {
    warnings.push(`resources will be deleted: ${run.steps.filter((s) => s.op === "delete").map((s) => s.name).join(", ")}`);
  }
  if (run.dataAtRisk.length) {
    warnings.push(
      `this deletes data: ${run.dataAtRisk.map((d) => `${d.label} (in ${d.where})`).join(", ")}` +
        (dbOptions.approveDataLoss ? "" : "; applying needs --approve-data-loss"),
    );
  }
  const plan: Plan = {
    stack: ctx.stack.name,
    op,
    from: live.version,
    to: target.version,
    description: target.description,
    configChanges: diffConfig(before, target.config),
    resourceChanges: run.steps,
    dataAtRisk: run.dataAtRisk,
    changeSummary: run.changeSummary,
    rollout: { move: desired.move, before: live.rollout, after: desired.rollout },
    secretGenerations: { live: live.secretGenerations ?? {}, applied: desired.generations },
    database: desired.database
      ? {
          policy: desired.database.plan.policy,
          schemaBefore: desired.databaseLeft?.plan?.schema ?? live.database?.schema ?? 0,
          schemaAfter: desired.database.plan.schema,
          snapshot: desired.database.plan.takeSnapshot,
          restore: desired.database.plan.restore,
          live: desired.database.plan.live,
          remove: desired.database.plan.remove,
          dataLossWindow: desired.database.dataLossWindow,
        }
      : undefined,
    notes: desired.notes,
    warnings,
    ...planDigestFor(ctx.stack.name, op, target.version, history, desired),
  };
  if (planFile) savedPlans.set(plan, planFile);
  return plan;
}

// The update plan file saved when a plan was previewed for confirmation; kept out of the plan's data.
const savedPlans = new WeakMap<Plan, string>();

/**
 * Moves a confirmed plan's update-plan file into another engine's workspace: a first deploy previews on a
 * scratch stack whose workspace is removed before the real stack is created, and must still be held to
 * what was shown. Returns a function to call once the new engine is open.
 */
export function carryPlan(plan: Plan | undefined): (engine: EngineStack) => void {
  const file = plan ? savedPlans.get(plan) : undefined;
  const text = file && fs.existsSync(file) ? fs.readFileSync(file) : undefined;
  return (engine) => {
    if (!plan || !text) return;
    const moved = engine.planFile();
    fs.writeFileSync(moved, text);
    savedPlans.set(plan, moved);
  };
}

/**
 * The check an update runs once the stack's in-flight mark is held ({@link EngineStack.up}'s
 * `beforeUpdate`): raises {@link StalePlanError} when the newest update is no longer the one the plan was
 * computed from (`history[0]`), so a plan never lands on a stack it did not describe.
 */
export function unchangedSince(ctx: EnvironmentContext, engine: EngineStack, history: HistoryEntry[], arrow: string): () => Promise<void> {
  const planned = history[0];
  return async () => {
    const now = toHistoryEntries(await engine.history())[0];
    if ((now?.updateId ?? "") !== (planned?.updateId ?? "") || (now?.revision ?? 0) !== (planned?.revision ?? 0)) {
      throw new StalePlanError(ctx.stack.name, arrow, planned?.revision ?? 0, now?.revision ?? 0);
    }
  };
}

/**
 * Applies a version (as {@link prepareApply} planned it) through the engine, records it as a new forward entry in the backend's history
 * (the update message carries who, from, to, why and the update's id), then verifies it through the
 * program's endpoint and records the outcome in stackpin's records, keyed by the update's id. Raises
 * {@link StalePlanError} when history moved since `history` was read (the plan is not applied),
 * {@link ApplyFailedError} when the engine fails; a failed verification is returned in `verification`,
 * for the caller to act on.
 */
export async function applyWith(
  ctx: EnvironmentContext,
  engine: EngineStack,
  record: ApplyRecord & { op: ApplyResult["op"] },
  target: VersionFile,
  history: HistoryEntry[],
  desired: DesiredState,
  progress: ProgressOptions,
  /**
   * The plan the guard previewed ({@link planWith} with the same `desired`; the confirmed one when asked):
   * the update is held to its saved update plan, and its preview already ran the database checks.
   */
  held: Plan,
): Promise<ApplyResult> {
  const started = Date.now();
  const arrow = record.from ? `${record.from} -> ${record.to}` : record.to;
  progress.onProgress?.({ type: "phase", phase: "apply", message: `${record.op} ${arrow} on ${ctx.stack.name}: ${desired.notes.join("; ")}` });
  // The config the plan was previewed with (a first deploy previewed it on its scratch stack).
  await engine.setConfig(desired.config);
  // The plan (layout, secrets, database, approvals, from) was computed from `history`: if another
  // operation applied since, it describes a stack that no longer exists. Checked while this process holds
  // the stack's in-flight mark, so no other stackpin operation can apply between the check and the update;
  // the engine's own lock covers the update itself.
  const stillCurrent = unchangedSince(ctx, engine, history, arrow);
  const id = newUpdateId();
  const watch = watchDuring(ctx, target, progress);
  let run;
  try {
    const plan = savedPlans.get(held);
    run = await engine.up(encodeRecord({ ...record, id }), progressBridge(progress), { plan, beforeUpdate: stillCurrent });
  } catch (err) {
    const found = (await watch?.stop()) ?? [];
    // Refused before the update started (another operation holds the lock, the passphrase is wrong).
    if (err instanceof StackpinError && !(err instanceof EngineFailedError)) throw err;
    throw await updateFailure(ctx, engine, target, history, desired, id, err, found);
  }
  await watch?.stop();
  // The update is the one after the entry the stale-plan check just saw on top (the engine's lock orders
  // updates; no history read after it).
  const revision = (history[0]?.revision ?? 0) + 1;
  let verification: VerificationResult | undefined;
  const endpoint = run.outputs.endpoint?.value;
  if (typeof endpoint === "string") {
    progress.onProgress?.({ type: "phase", phase: "verify", message: `verifying ${target.version} through ${endpoint}` });
    verification = await verifyRelease(
      endpoint,
      target.version,
      target.verify,
      (c) => progress.onProgress?.({ type: "check", name: c.name, passed: c.passed, detail: c.detail, attempts: c.attempts }),
      { secrets: ctx.secretValues },
    );
  }
  progress.onProgress?.({ type: "phase", phase: "record", message: `recording ${target.version} as live` });
  // One records write: the verification outcome and the bookkeeping an older stackpin set as a stack tag each.
  const at = new Date().toISOString();
  await recordStoreOf(engine).update((r) => {
    if (verification) r.verifications[id] = { outcome: (verification.passed ? "passed" : `failed: ${verification.reason}`).slice(0, 1000), at, version: target.version };
    r.live = {
      version: target.version,
      appliedBy: record.who.slice(0, 256),
      verifiedVersion: verification?.passed ? target.version : r.live?.verifiedVersion,
      updateId: id,
      outputs: run.outputs,
      at,
    };
  });
  return {
    stack: ctx.stack.name,
    op: record.op,
    from: record.from,
    to: record.to,
    revision,
    resourceChanges: run.steps,
    changeSummary: run.changeSummary as Record<string, number>,
    outputs: run.outputs,
    verification,
    database: desired.database
      ? {
          policy: desired.database.plan.policy,
          schema: desired.database.plan.schema,
          notes: desired.database.notes,
          warnings: desired.database.warnings,
          dataLossWindow: desired.database.dataLossWindow,
        }
      : undefined,
    durationMs: Date.now() - started,
  };
}

/**
 * Starts the program's watch beside the engine's update (its `watchDuringApply`), its lines
 * said as progress warnings; undefined when the program has none. A watch that fails is only silent.
 */
function watchDuring(ctx: EnvironmentContext, target: VersionFile, progress: ProgressOptions) {
  const config = Object.fromEntries(
    Object.entries({ ...ctx.stack.settings.config, ...target.config }).filter(([, v]) => !(typeof v === "object" && v !== null && "secure" in v)),
  );
  try {
    return ctx.program.watchDuringApply?.({
      context: { stackName: ctx.stack.name, stateDir: ctx.stateDir },
      config,
      say: (line) => progress.onProgress?.({ type: "diagnostic", severity: "warning", message: line }),
    });
  } catch {
    return undefined;
  }
}

/**
 * What an update that ran and failed becomes: recorded as failed (a verification record under the update's id), and
 * typed by what failed — the database change, the health gate (exit 11), a release that never became ready,
 * or anything else (exit 8). `found` is what the program's watch of the update found still wrong, which the
 * error says after the engine's own lines. Never a refusal: the update is in history, and the caller audits
 * it as a failure.
 */
async function updateFailure(
  ctx: EnvironmentContext,
  engine: EngineStack,
  target: VersionFile,
  history: HistoryEntry[],
  desired: DesiredState,
  id: string,
  err: unknown,
  found: string[],
): Promise<ApplyFailedError> {
  const message = err instanceof EngineFailedError ? err.detail : (err as Error).message;
  // The engine's whole report, for a failure whose error lines say too little.
  if ((process.env.STACKPIN_DEBUG ?? "").split(",").includes("engine")) process.stderr.write(`[engine] ${message}\n`);
  const detail = engineFailure(message);
  // Named only when the engine did record an update after the one the plan started from.
  const newest = await newestRevision(engine).catch(() => undefined);
  const revision = newest !== undefined && newest > (history[0]?.revision ?? 0) ? newest : undefined;
  if (revision) await recordVerification(engine, id, target.version, `failed: ${detail}`).catch(() => undefined);
  const left = revision ? await databaseLeftBy(ctx, engine, desired).catch(() => []) : [];
  const cause = err instanceof EngineFailedError ? (err.cause ?? err) : err;
  const refusal = decodeRefusal(message);
  if (refusal?.kind === "health-gate") return new HealthGateFailedError(ctx.stack.name, target.version, refusal.detail, { cause, revision, left });
  const db = programFailure(ctx.stack.name, message);
  if (db) return new DatabaseApplyFailedError(ctx.stack.name, target.version, (db as RestoreImpossibleError | DatabaseUnavailableError).detail, { cause, revision, left });
  const hints = [ctx.program.explainFailure?.(message), ...found].filter((h): h is string => !!h);
  const notReady = ctx.program.explainNotReady?.(message);
  if (notReady) return new NeverReadyError(ctx.stack.name, target.version, notReady, { cause, revision, left, hints });
  return new ApplyFailedError(ctx.stack.name, target.version, detail, { cause, revision, left, hints });
}

/** What a failed update did to the database, read from the checkpoint it left: sentences for its error. */
async function databaseLeftBy(ctx: EnvironmentContext, engine: EngineStack, desired: DesiredState): Promise<string[]> {
  const plan = desired.database?.plan;
  const before = desired.databaseLeft?.plan?.schema ?? 0;
  if (!plan) return [];
  const { resources } = await engine.checkpoint();
  const schema = schemaInState(resources);
  const taken = plan.takeSnapshot && plan.takeSnapshot in snapshotsInState(resources) ? plan.takeSnapshot : undefined;
  if (schema === undefined || schema === before) return taken ? [`snapshot ${taken} was taken and is kept; the database schema did not move (${before}).`] : [];
  const live = liveState(await readHistory(engine)).version;
  return [
    `the database DID change: its schema moved from ${before} to ${schema}${taken ? ` (snapshot ${taken} was taken first and is kept)` : ""}, ` +
      `so ${live ?? "the live release"} now runs on schema ${schema}. \`stackpin preview --stack ${ctx.stack.name} --to ${live ?? "<version>"}\` shows the way back` +
      `${taken ? ` (a point-in-time restore to ${taken} when the migration has no down)` : ""}.`,
  ];
}

/**
 * Runs the engine's preview, turning a program's refusal (`lib/engine/refusal.ts`) into its typed error; the
 * preview changed nothing, so that is a refusal (exit 13). Any other failure is the engine's (exit 8).
 */
async function previewOrExplain(ctx: EnvironmentContext, engine: EngineStack, progress: ProgressOptions, savePlan?: string) {
  try {
    return await engine.preview(progressBridge(progress), { savePlan });
  } catch (err) {
    const message = err instanceof EngineFailedError ? err.detail : (err as Error).message;
    const engineFailed = !(err instanceof StackpinError) || err instanceof EngineFailedError;
    const hint = ctx.program.explainFailure?.(message);
    throw programFailure(ctx.stack.name, message) ?? (engineFailed ? new EngineFailedError(ctx.stack.name, message, { cause: err, during: "the preview (nothing was applied)", hint }) : err);
  }
}

/** Records an update's verification outcome in stackpin's records, under the update's id. */
async function recordVerification(engine: EngineStack, id: string, version: string, outcome: string): Promise<void> {
  await recordStoreOf(engine).update((r) => {
    r.verifications[id] = { outcome: outcome.slice(0, 1000), at: new Date().toISOString(), version };
  });
}

async function newestRevision(engine: EngineStack): Promise<number> {
  return toHistoryEntries(await engine.history())[0]?.revision ?? 0;
}
