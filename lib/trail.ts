import * as path from "node:path";
import { AuditEntry, auditFile, AuditLog } from "./audit";
import type { EngineStack } from "./engine/stack";
import type { EnvironmentContext, ProgressOptions } from "./environment";
import { StackpinError } from "./errors";

const headTag = "stackpin:audit-head";
const freezeTag = "stackpin:freeze";

/** The stack's audit trail, anchored in its tags. */
export function auditLogFor(ctx: EnvironmentContext, engine: EngineStack): AuditLog {
  return new AuditLog(auditFile(ctx.backendUrl, ctx.projectDir, ctx.stack.project, ctx.stack.name), {
    read: async () => (await engine.tags())[headTag],
    write: (head) => engine.setTags({ [headTag]: head }),
  });
}

/** Appends to the audit trail; a failure to write is reported, and does not undo what happened. */
export async function audit(
  ctx: EnvironmentContext,
  engine: EngineStack,
  entry: Omit<AuditEntry, "seq" | "prev" | "hash" | "at" | "stack" | "actor">,
  progress: ProgressOptions,
): Promise<void> {
  try {
    await auditLogFor(ctx, engine).append({ ...entry, stack: ctx.stack.name, actor: ctx.actor });
  } catch (err) {
    progress.onProgress?.({ type: "diagnostic", severity: "warning", message: `could not write the audit trail: ${(err as Error).message}` });
  }
}

/** True for the errors raised before anything changed: bad input, missing approval, a freeze, a lock. */
export function isRefusal(err: unknown): boolean {
  return err instanceof StackpinError && [2, 3, 4, 5, 6, 7, 9, 10, 12, 13, 14].includes(err.exitCode);
}

/**
 * Records a failed operation in the audit trail. Refusals are not recorded: they change nothing, the
 * audit trail and its anchor in the backend included.
 */
export async function auditFailure(
  ctx: EnvironmentContext,
  engine: EngineStack,
  entry: Omit<AuditEntry, "seq" | "prev" | "hash" | "at" | "stack" | "actor" | "result" | "detail">,
  err: unknown,
  progress: ProgressOptions,
): Promise<void> {
  if (isRefusal(err)) return;
  await audit(ctx, engine, { ...entry, result: "failed", detail: ((err as Error).message ?? String(err)).split("\n")[0].slice(0, 300) }, progress);
}

/** Where a stack's incident records are written. */
export function incidentsDir(ctx: EnvironmentContext): string {
  return path.join(ctx.projectDir, ".stackpin", "incidents", ctx.stack.name);
}

/** A deploy freeze, as stored in the backend. */
export interface Freeze {
  reason: string;
  by: string;
  at: string;
}

/** The freeze in the stack's tags, if any. */
export function freezeOf(tags: Record<string, string>): Freeze | undefined {
  const raw = tags[freezeTag];
  if (!raw) return undefined;
  try {
    return JSON.parse(raw) as Freeze;
  } catch {
    return { reason: raw, by: "unknown", at: "unknown" };
  }
}

/** Sets or lifts the freeze tag. */
export async function writeFreeze(engine: EngineStack, freeze: Freeze | undefined): Promise<void> {
  if (freeze) await engine.setTags({ [freezeTag]: JSON.stringify(freeze) });
  else await engine.removeTag(freezeTag);
}
