import type { EnvironmentContext, ProgressOptions } from "../environment";
import { NotConfirmedError, VerificationFailedError } from "../errors";
import { liveState } from "../history-record";
import { ApplyResult, applyWith, planWith, readHistory } from "./apply";
import type { Plan } from "./plan";
import { resolveTarget, validateTargetEarly } from "./resolve";

/** Options for {@link rollback}. */
export interface RollbackOptions extends ProgressOptions {
  /** The version to go back to: `v41`, `41`, or `previous` (the one before the live version). */
  to: string;
  /** Why, recorded in history ("error rate 7% after v42"). */
  reason?: string;
  /**
   * Called with the plan before anything changes; return false to stop (raises {@link NotConfirmedError}).
   * A rollback without it applies straight away, as `--yes` does.
   */
  confirm?: (plan: Plan) => Promise<boolean>;
  /** Approves the data loss of a point-in-time restore, when the database policy needs one. */
  approveDataLoss?: boolean;
}

/**
 * Rolls back by re-applying an earlier version's config through the engine. The past is not rewritten:
 * the rollback is a new forward entry in history whose config equals the target version's, like a Helm
 * revision. Raises {@link VerificationFailedError} when the version it went back to fails verification.
 */
export async function rollback(ctx: EnvironmentContext, options: RollbackOptions): Promise<ApplyResult & { plan?: Plan }> {
  options.onProgress?.({ type: "phase", phase: "validate", message: `resolving ${options.to} for ${ctx.stack.name}` });
  validateTargetEarly(ctx, options.to);
  const engine = await ctx.openEngine({ create: false });
  try {
    const history = await readHistory(engine);
    const target = resolveTarget(ctx, options.to, history);
    let plan: Plan | undefined;
    if (options.confirm) {
      plan = await planWith(ctx, engine, "rollback", target, history, options, { approveDataLoss: options.approveDataLoss });
      if (!(await options.confirm(plan))) throw new NotConfirmedError(ctx.stack.name, target.version);
    }
    // After a failed apply the stack may be partly at that version: that is what we roll back from.
    const live = liveState(history);
    const from = live.failed?.to ?? live.version;
    const result = await applyWith(
      ctx,
      engine,
      { op: "rollback", from, to: target.version, who: ctx.actor, reason: options.reason },
      target,
      history,
      options,
      { approveDataLoss: options.approveDataLoss },
    );
    if (result.verification && !result.verification.passed) {
      throw new VerificationFailedError(ctx.stack.name, target.version, result.verification.reason ?? "verification failed", undefined, { rollback: result });
    }
    return { ...result, plan };
  } finally {
    engine.close();
  }
}

/** Previews a rollback: the same as {@link preview} with `op: "rollback"` and `previous` understood. */
export async function previewRollback(
  ctx: EnvironmentContext,
  options: Omit<RollbackOptions, "confirm" | "reason">,
): Promise<Plan> {
  validateTargetEarly(ctx, options.to);
  const engine = await ctx.openEngine({ create: false });
  try {
    const history = await readHistory(engine);
    const target = resolveTarget(ctx, options.to, history);
    return await planWith(ctx, engine, "rollback", target, history, options, { approveDataLoss: options.approveDataLoss });
  } finally {
    engine.close();
  }
}
