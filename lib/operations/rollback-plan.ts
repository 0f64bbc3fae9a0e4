import type { StackOutput } from "../engine/stack";
import type { EnvironmentContext } from "../environment";
import { HistoryEntry, liveState } from "../records/history-record";
import { planDigestFor } from "../policy/plan-digest";
import type { CheckpointResource } from "../planning/database-left";
import type { VersionFile } from "../versions/schema";
import { DatabaseOptions, DesiredState, desiredState } from "./apply";
import { fileDiffersWarning, resolveRollbackTarget, resolveTarget } from "./resolve";

/**
 * What a rollback is planned from, read once before anything changes (STYLE §9): the history with its
 * verification outcomes, the outputs the newest update left, and whether recovery found an interrupted
 * operation (then nothing is taken as already done).
 */
export interface RollbackWorld {
  history: HistoryEntry[];
  outputs: Record<string, StackOutput>;
  /** The checkpoint's resources: what failed updates left behind. */
  resources?: CheckpointResource[];
  interrupted: boolean;
}

/** What a rollback asks for. */
export interface RollbackRequest extends Pick<DatabaseOptions, "approveDataLoss"> {
  /** `v41`, `41` or `previous`. */
  to: string;
  /** Re-apply even when the target is already live and verified. */
  force?: boolean;
}

/**
 * A rollback's whole decision as one value: either nothing to do, or exactly what will be applied (target,
 * rollout move, secret generations, database decision, notes, warnings) and the digest a signed approval
 * names. Execution applies this value and computes nothing of its own.
 */
export type RollbackPlan =
  | { kind: "skip"; target: VersionFile; revision: number; message: string }
  | {
      kind: "apply";
      target: VersionFile;
      /** What the stack is at: the live version, or after a failed apply the version it may be partly at. */
      from?: string;
      desired: DesiredState;
      planDigest: string;
      baseRevision: number;
    };

/**
 * The newest history entry, when it is a stackpin deploy or rollback of `version` that succeeded and passed
 * verification: a rollback to `version` has nothing to do. Anything after it (a failed apply, a refresh,
 * an update outside stackpin) or a verification that failed or never ran means it is re-applied.
 */
export function alreadyLive(history: HistoryEntry[], version: string): HistoryEntry | undefined {
  const newest = history[0];
  const live = liveState(history);
  if (!newest || live.failed || live.version !== version || live.revision !== newest.revision) return undefined;
  if (!["deploy", "rollback"].includes(newest.op) || newest.result !== "succeeded" || newest.to !== version) return undefined;
  return newest.verification === "passed" ? newest : undefined;
}

/** The skip decision alone (it needs no outputs): also what answers a rollback before the engine is loaded. */
export function skipOf(ctx: EnvironmentContext, history: HistoryEntry[], request: RollbackRequest, interrupted: boolean): Extract<RollbackPlan, { kind: "skip" }> | undefined {
  if (request.force || interrupted) return undefined;
  const target = resolveTarget(ctx, request.to, history);
  const live = alreadyLive(history, target.version);
  return live
    ? { kind: "skip", target, revision: live.revision, message: `skipped rollback: ${target.version} is already live (revision ${live.revision}, verified)` }
    : undefined;
}

/** Plans a rollback from the world as read; pure apart from reading version files. Raises the typed refusals of planning. */
export function planRollback(ctx: EnvironmentContext, world: RollbackWorld, request: RollbackRequest): RollbackPlan {
  const skip = skipOf(ctx, world.history, request, world.interrupted);
  if (skip) return skip;
  // What ran, never the file as it is now: an edited file, or one that never ran, is a deploy.
  const ran = resolveRollbackTarget(ctx, request.to, world.history);
  const target = ran.version;
  // After a failed apply the stack may be partly at that version: that is what we roll back from.
  const live = liveState(world.history);
  const computed = desiredState(ctx, "rollback", target, world.history, world.outputs, { approveDataLoss: request.approveDataLoss }, world.resources);
  const desired = { ...computed, warnings: [...fileDiffersWarning(ran), ...computed.warnings] };
  return {
    kind: "apply",
    target,
    from: live.failed?.to ?? live.version,
    desired,
    ...planDigestFor(ctx.stack.name, "rollback", target.version, world.history, desired),
  };
}
