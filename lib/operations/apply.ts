import type { StackSettingsConfigValue } from "@pulumi/pulumi/automation";
import type { EngineStack, ResourceStep, StackOutput } from "../engine/stack";
import { EnvironmentContext, progressBridge, ProgressOptions } from "../environment";
import { ApplyFailedError, StackpinError } from "../errors";
import { ApplyRecord, encodeRecord, HistoryEntry, liveState, toHistoryEntries } from "../history-record";
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
  durationMs: number;
}

/** The stack config a version file stands for: keys qualified with the project, plus the version marker. */
export function stackConfigFor(project: string, version: VersionFile): Record<string, StackSettingsConfigValue> {
  const config: Record<string, StackSettingsConfigValue> = {};
  for (const [key, value] of Object.entries(version.config)) {
    config[key.includes(":") ? key : `${project}:${key}`] = value;
  }
  config["stackpin:version"] = version.version;
  return config;
}

/** Reads history from the engine and turns it into entries, newest first. */
export async function readHistory(engine: EngineStack): Promise<HistoryEntry[]> {
  return toHistoryEntries(await engine.history());
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
  progress.onProgress?.({ type: "phase", phase: "preview", message: `previewing ${target.version} on ${ctx.stack.name}` });
  await engine.setConfig(stackConfigFor(ctx.stack.project, target));
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
    warnings,
  };
}

/**
 * Applies a version through the engine and records it as a new forward entry in the backend's history
 * (the update message carries who, from, to and why; stack tags carry the live version).
 */
export async function applyWith(
  ctx: EnvironmentContext,
  engine: EngineStack,
  record: ApplyRecord,
  target: VersionFile,
  progress: ProgressOptions,
): Promise<ApplyResult> {
  const started = Date.now();
  const arrow = record.from ? `${record.from} -> ${record.to}` : record.to;
  progress.onProgress?.({ type: "phase", phase: "apply", message: `${record.op} ${arrow} on ${ctx.stack.name}` });
  await engine.setConfig(stackConfigFor(ctx.stack.project, target));
  let run;
  try {
    run = await engine.up(encodeRecord(record), progressBridge(progress));
  } catch (err) {
    if (err instanceof StackpinError) throw err;
    const detail = (err as Error).message.split("\n").filter((l) => /error|failed/i.test(l)).slice(0, 8).join("\n");
    throw new ApplyFailedError(ctx.stack.name, target.version, detail, { cause: err });
  }
  progress.onProgress?.({ type: "phase", phase: "record", message: `recording ${target.version} as live` });
  await engine.setTags({ "stackpin:version": target.version, "stackpin:applied-by": record.who });
  const [newest] = toHistoryEntries(await engine.history());
  return {
    stack: ctx.stack.name,
    op: record.op,
    from: record.from,
    to: record.to,
    revision: newest?.revision ?? 0,
    resourceChanges: run.steps,
    changeSummary: run.changeSummary as Record<string, number>,
    outputs: run.outputs,
    durationMs: Date.now() - started,
  };
}
