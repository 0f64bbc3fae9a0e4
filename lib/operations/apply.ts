import type { StackSettingsConfigValue } from "@pulumi/pulumi/automation";
import type { EngineStack, ResourceStep, StackOutput } from "../engine/stack";
import { EnvironmentContext, progressBridge, ProgressOptions } from "../environment";
import { ApplyFailedError, StackpinError } from "../errors";
import {
  ApplyRecord,
  encodeRecord,
  HistoryEntry,
  liveState,
  toHistoryEntries,
  verificationTag,
} from "../history-record";
import { describeMove, nextLayout, RolloutLayout, RolloutMove } from "../rollout";
import { forwardOnly, Generations } from "../secret-generations";
import { verifyRelease, VerificationResult } from "../verification";
import { diffConfig } from "../versions/config-diff";
import type { VersionFile } from "../versions/schema";
import type { Plan } from "./plan";

/** The result of a deploy or rollback that the engine completed. */
export interface ApplyResult {
  stack: string;
  op: "deploy" | "rollback";
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
  durationMs: number;
}

/** Everything stackpin applies for a version: its config, and the layout and secrets it derives. */
export interface DesiredState {
  config: Record<string, StackSettingsConfigValue>;
  rollout: RolloutLayout;
  move: RolloutMove;
  generations: Generations;
  /** Sentences for the preview about the layout and the secrets. */
  notes: string[];
  /** The notes a reviewer must not miss (a secret kept back). */
  warnings: string[];
}

function plainConfig(version: VersionFile): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(version.config).filter(([, v]) => !(typeof v === "object" && v !== null && "secure" in v)),
  );
}

/**
 * The stack config for applying `target` after `history`: the version's config (keys qualified with the
 * project), plus `stackpin:version`, the blue/green layout, the forward-only secret generations and the
 * verification settings.
 */
export function desiredState(project: string, op: ApplyResult["op"], target: VersionFile, history: HistoryEntry[]): DesiredState {
  const live = liveState(history);
  const { layout, move } = nextLayout(live.rollout, { version: target.version, config: plainConfig(target) }, op);
  const secrets = forwardOnly(
    Object.fromEntries(Object.entries(target.secrets).map(([k, v]) => [k, v.generation])),
    live.secretGenerations,
    target.version,
  );
  const config: Record<string, StackSettingsConfigValue> = {};
  for (const [key, value] of Object.entries(target.config)) {
    config[key.includes(":") ? key : `${project}:${key}`] = value;
  }
  config["stackpin:version"] = target.version;
  config["stackpin:rollout"] = JSON.stringify(layout);
  config["stackpin:secrets"] = JSON.stringify(secrets.generations);
  config["stackpin:verify"] = JSON.stringify(target.verify);
  return {
    config,
    rollout: layout,
    move,
    generations: secrets.generations,
    notes: [describeMove(move, live.rollout, layout), ...secrets.notes],
    warnings: secrets.notes.filter((n) => /never roll back/.test(n)),
  };
}

/** Reads history (with verification outcomes from the stack's tags), newest first. */
export async function readHistory(engine: EngineStack): Promise<HistoryEntry[]> {
  const [updates, tags] = await Promise.all([engine.history(), engine.tags()]);
  return toHistoryEntries(updates, tags);
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
): Promise<Plan> {
  const live = liveState(history);
  const warnings: string[] = [];
  let before: VersionFile["config"] = {};
  if (live.version) {
    try {
      before = ctx.store.version(ctx.stack, live.version).config;
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
  const desired = desiredState(ctx.stack.project, op, target, history);
  warnings.push(...desired.warnings);
  progress.onProgress?.({ type: "phase", phase: "preview", message: `previewing ${target.version} on ${ctx.stack.name}` });
  await engine.setConfig(desired.config);
  const run = await engine.preview(progressBridge(progress));
  for (const s of run.steps.filter((step) => step.op === "replace")) {
    warnings.push(`${s.name} will be replaced (${s.replaceKeys.length ? `${s.replaceKeys.join(", ")} changed` : "forced"})`);
  }
  if (run.steps.some((s) => s.op === "delete")) {
    warnings.push(`resources will be deleted: ${run.steps.filter((s) => s.op === "delete").map((s) => s.name).join(", ")}`);
  }
  return {
    stack: ctx.stack.name,
    op,
    from: live.version,
    to: target.version,
    description: target.description,
    configChanges: diffConfig(before, target.config),
    resourceChanges: run.steps,
    changeSummary: run.changeSummary,
    rollout: { move: desired.move, before: live.rollout, after: desired.rollout },
    secretGenerations: { live: live.secretGenerations ?? {}, applied: desired.generations },
    notes: desired.notes,
    warnings,
  };
}

/**
 * Applies a version through the engine, records it as a new forward entry in the backend's history
 * (the update message carries who, from, to and why), then verifies it through the program's endpoint
 * and records the outcome in stack tags. Raises {@link ApplyFailedError} when the engine fails; a failed
 * verification is returned in `verification`, for the caller to act on.
 */
export async function applyWith(
  ctx: EnvironmentContext,
  engine: EngineStack,
  record: ApplyRecord & { op: ApplyResult["op"] },
  target: VersionFile,
  history: HistoryEntry[],
  progress: ProgressOptions,
): Promise<ApplyResult> {
  const started = Date.now();
  const arrow = record.from ? `${record.from} -> ${record.to}` : record.to;
  const desired = desiredState(ctx.stack.project, record.op, target, history);
  progress.onProgress?.({ type: "phase", phase: "apply", message: `${record.op} ${arrow} on ${ctx.stack.name}: ${desired.notes[0]}` });
  await engine.setConfig(desired.config);
  let run;
  try {
    run = await engine.up(encodeRecord(record), progressBridge(progress));
  } catch (err) {
    if (err instanceof StackpinError) throw err;
    const detail = engineFailure((err as Error).message);
    const failedRevision = await newestRevision(engine).catch(() => history.length + 1);
    await engine.setTags({ [verificationTag(failedRevision)]: `failed: ${detail}`.slice(0, 250) }).catch(() => undefined);
    throw new ApplyFailedError(ctx.stack.name, target.version, detail, { cause: err });
  }
  const revision = await newestRevision(engine);
  let verification: VerificationResult | undefined;
  const endpoint = run.outputs.endpoint?.value;
  if (typeof endpoint === "string") {
    progress.onProgress?.({ type: "phase", phase: "verify", message: `verifying ${target.version} through ${endpoint}` });
    verification = await verifyRelease(endpoint, target.version, target.verify, (c) =>
      progress.onProgress?.({ type: "check", name: c.name, passed: c.passed, detail: c.detail, attempts: c.attempts }),
    );
  }
  progress.onProgress?.({ type: "phase", phase: "record", message: `recording ${target.version} as live` });
  const tags: Record<string, string> = { "stackpin:version": target.version, "stackpin:applied-by": record.who };
  if (verification) {
    tags[verificationTag(revision)] = verification.passed ? "passed" : `failed: ${verification.reason}`.slice(0, 250);
    if (verification.passed) tags["stackpin:verified-version"] = target.version;
  }
  await engine.setTags(tags);
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
    durationMs: Date.now() - started,
  };
}

async function newestRevision(engine: EngineStack): Promise<number> {
  return toHistoryEntries(await engine.history())[0]?.revision ?? 0;
}

/** The engine's own error lines, without the CLI's boilerplate and progress lines. */
function engineFailure(message: string): string {
  const errors = message
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("error: ") && l !== "error: update failed")
    .map((l) => l.slice("error: ".length));
  return [...new Set(errors)].slice(0, 4).join("\n") || message.trim().split("\n").slice(-3).join("\n");
}
