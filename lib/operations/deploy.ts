import type { EnvironmentContext, ProgressOptions } from "../environment";
import { ApplyFailedError, NotConfirmedError, VerificationFailedError } from "../errors";
import { lastVerifiedVersion, liveState } from "../history-record";
import { ApplyResult, applyWith, planWith, readHistory } from "./apply";
import type { Plan } from "./plan";
import { rollback } from "./rollback";

/** Options for {@link deploy}. */
export interface DeployOptions extends ProgressOptions {
  /** The version to deploy (`v42` or `42`). */
  version: string;
  /** Why, recorded in history. */
  message?: string;
  /**
   * Called with the plan before anything changes; return false to stop (raises {@link NotConfirmedError}).
   * When absent, the deploy applies without a separate preview.
   */
  confirm?: (plan: Plan) => Promise<boolean>;
  /** Approves the data loss of a point-in-time restore, when the database policy needs one. */
  approveDataLoss?: boolean;
  /**
   * When the new version fails its health gate or verification, roll back to the last version that
   * verified. The deploy still raises {@link VerificationFailedError}, saying where it rolled back to.
   */
  autoRollback?: boolean;
}

/**
 * Deploys a version: validates its file, optionally previews and asks, applies, verifies, and records a
 * new history entry. A failed verification raises {@link VerificationFailedError}, after rolling back
 * when `autoRollback` is set.
 */
export async function deploy(ctx: EnvironmentContext, options: DeployOptions): Promise<ApplyResult & { plan?: Plan }> {
  options.onProgress?.({ type: "phase", phase: "validate", message: `validating ${options.version} for ${ctx.stack.name}` });
  const target = ctx.store.version(ctx.stack, options.version);
  const engine = await ctx.openEngine({ create: true });
  let history;
  let result: (ApplyResult & { plan?: Plan }) | undefined;
  let reason: string;
  try {
    history = await readHistory(engine);
    let plan: Plan | undefined;
    if (options.confirm) {
      plan = await planWith(ctx, engine, "deploy", target, history, options, { approveDataLoss: options.approveDataLoss });
      if (!(await options.confirm(plan))) throw new NotConfirmedError(ctx.stack.name, target.version);
    }
    const from = liveState(history).version;
    try {
      result = {
        ...(await applyWith(ctx, engine, { op: "deploy", from, to: target.version, who: ctx.actor, reason: options.message }, target, history, options, { approveDataLoss: options.approveDataLoss })),
        plan,
      };
      if (!result.verification || result.verification.passed) return result;
      reason = result.verification.reason ?? "verification failed";
    } catch (err) {
      if (!(err instanceof ApplyFailedError) || !options.autoRollback) throw err;
      reason = err.detail;
    }
  } finally {
    engine.close();
  }
  if (!options.autoRollback) throw new VerificationFailedError(ctx.stack.name, target.version, reason, undefined, { deploy: result });
  const goodVersion = lastVerifiedVersion(history, target.version);
  if (!goodVersion) {
    throw new VerificationFailedError(ctx.stack.name, target.version, `${reason}; no earlier version ever verified, so nothing to roll back to`, undefined, { deploy: result });
  }
  options.onProgress?.({ type: "phase", phase: "rollback", message: `${target.version} failed verification; rolling back to ${goodVersion}` });
  const back = await rollback(ctx, { to: goodVersion, reason: `auto-rollback: ${target.version} failed verification: ${reason}`.slice(0, 300), onProgress: options.onProgress, onEngineEvent: options.onEngineEvent });
  throw new VerificationFailedError(ctx.stack.name, target.version, reason, goodVersion, { deploy: result, rollback: back });
}
