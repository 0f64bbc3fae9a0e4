import * as path from "node:path";
import { AuditEntry, auditFile, AuditLog, AuditTrail, S3AuditLog } from "./audit";
import type { EngineStack } from "../engine/stack";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { ExitCode, StackpinError } from "../errors";
import { Freeze, recordStoreOf } from "./ledger";
import { s3LocationOf } from "./s3-backend";

export type { Freeze } from "./ledger";

// Where an older stackpin anchored the trail; read until the anchor file beside the trail exists.
const legacyHeadTag = "stackpin:audit-head";

/**
 * The stack's audit trail, anchored beside it: in the state's bucket on `s3://` (every machine shares it),
 * beside the state on `file://`, else in the project's `.stackpin/audit`.
 */
export function auditLogFor(ctx: EnvironmentContext, engine: EngineStack): AuditTrail {
  const s3 = s3LocationOf(ctx.backendUrl);
  if (s3) return new S3AuditLog(s3, ctx.stack.project, ctx.stack.name);
  return new AuditLog(auditFile(ctx.backendUrl, ctx.projectDir, ctx.stack.project, ctx.stack.name), {
    stackName: ctx.stack.name,
    legacyAnchor: async () => (await engine.tags())[legacyHeadTag],
  });
}

/** Appends to the audit trail; a failure to write is reported, and does not undo what happened. */
export async function audit(
  ctx: EnvironmentContext,
  engine: EngineStack,
  entry: Omit<AuditEntry, "seq" | "prev" | "hash" | "at" | "stack" | "actor" | "anchor">,
  progress: ProgressOptions,
): Promise<void> {
  try {
    await auditLogFor(ctx, engine).append({ ...entry, stack: ctx.stack.name, actor: ctx.actor });
  } catch (err) {
    progress.onProgress?.({ type: "diagnostic", severity: "warning", message: `could not write the audit trail: ${(err as Error).message}` });
  }
}

/** True for the errors raised before anything changed: bad input, missing approval, a freeze, a lock, a store that cannot keep records safely. */
export function isRefusal(err: unknown): boolean {
  return err instanceof StackpinError && [2, 3, 4, 5, 6, 7, 9, 10, 12, 13, 14, 18].includes(err.exitCode);
}

/**
 * Refusals an auditor wants to see: an attempt stopped for a missing or refused approval, or by a freeze.
 * They are appended with result `refused`; the stack's state is not touched (the trail is not the state).
 */
function isAuditedRefusal(err: unknown): boolean {
  return err instanceof StackpinError && (err.exitCode === ExitCode.approvalRequired || err.exitCode === ExitCode.frozen);
}

/**
 * Records a failed operation in the audit trail: failures as `failed`, refused attempts that matter for
 * an audit (a missing approval, a freeze) as `refused`. Other refusals (bad input, a lock) are not
 * recorded.
 */
export async function auditFailure(
  ctx: EnvironmentContext,
  engine: EngineStack,
  entry: Omit<AuditEntry, "seq" | "prev" | "hash" | "at" | "stack" | "actor" | "result" | "detail" | "anchor">,
  err: unknown,
  progress: ProgressOptions,
): Promise<void> {
  const detail = ((err as Error).message ?? String(err)).split("\n")[0].slice(0, 300);
  if (isAuditedRefusal(err)) return audit(ctx, engine, { ...entry, result: "refused", detail }, progress);
  if (isRefusal(err)) return;
  await audit(ctx, engine, { ...entry, result: "failed", detail }, progress);
}

/** Where a stack's incident records are written. */
export function incidentsDir(ctx: EnvironmentContext): string {
  return path.join(ctx.projectDir, ".stackpin", "incidents", ctx.stack.name);
}

/** Sets or lifts the deploy freeze in stackpin's records; returns the freeze that was in force before. */
export async function writeFreeze(engine: EngineStack, freeze: Freeze | undefined): Promise<Freeze | undefined> {
  let before: Freeze | undefined;
  await recordStoreOf(engine).update((r) => {
    before = r.freeze;
    if (freeze) r.freeze = freeze;
    else delete r.freeze;
  });
  return before;
}
