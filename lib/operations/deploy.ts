import { ApprovalInput, approvedBy, recordOf } from "../policy/approvals";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import {
  ApplyFailedError,
  ApplyFailureStage,
  AutoRollbackNeedsApprovalError,
  DataLossApprovalRequiredError,
  failedAt,
  FrozenError,
  HealthGateFailedError,
  NeverReadyError,
  StackpinError,
  VerificationFailedError,
} from "../errors";
import { HistoryEntry, lastGoodVersion, liveState } from "../records/history-record";
import { audit, auditFailure, isRefusal } from "../records/trail";
import { ApplyResult, applyWith, carryPlan, prepareApply, readHistoryAndTags } from "./apply";
import { guardPlan } from "./guard";
import type { Plan } from "./plan";
import { recoverInterrupted, RecoveryReport } from "./recover";
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
  /**
   * When the new version fails its health gate or verification, roll back to the last version that
   * verified. The deploy still raises {@link VerificationFailedError}, saying where it rolled back to; when
   * going back is a point-in-time restore and `approveDataLoss` is not set, it does not roll back and raises
   * {@link AutoRollbackNeedsApprovalError} instead.
   */
  autoRollback?: boolean;
  /** Approves the data loss of a point-in-time restore, when the database policy needs one. */
  approveDataLoss?: boolean;
  /** Approvals the stack's policy may require. */
  approvals?: ApprovalInput;
}

/**
 * Deploys a version: refuses while deploys are frozen, checks the approvals the policy requires,
 * validates the file, optionally previews and asks, applies, verifies, and records a new history entry
 * and an audit entry. A failed verification raises {@link VerificationFailedError}, after rolling back
 * when `autoRollback` is set.
 */
export async function deploy(ctx: EnvironmentContext, options: DeployOptions): Promise<ApplyResult & { plan?: Plan; approvals: string[]; recovery?: RecoveryReport }> {
  options.onProgress?.({ type: "phase", phase: "validate", message: `validating ${options.version} for ${ctx.stack.name}` });
  const target = ctx.store.version(ctx.stack, options.version);
  // A first deploy plans on a scratch stack and creates the real one only once it is going to apply:
  // a refused first deploy leaves the backend and stack.yaml as they were.
  const planning = await ctx.openForPlan();
  let engine = planning.engine;
  let onScratch = planning.firstUse;
  let history: HistoryEntry[] = [];
  let result: (ApplyResult & { plan?: Plan; approvals: string[]; recovery?: RecoveryReport }) | undefined;
  let reason: string;
  // The failed deploy's whole story as its own error tells it (what it left in the database included).
  let failure: string;
  // Where it failed: its verification after the apply, or inside the update (never ready, or anything else).
  let stage: ApplyFailureStage = "verification";
  const from = () => liveState(history).version;
  try {
    // An operation killed mid-way is cleaned up first, so that re-running it is the way to finish it.
    const recovery = await recoverInterrupted(ctx, engine, options);
    const record = await readHistoryAndTags(engine);
    const freeze = record.records.freeze;
    if (freeze) throw new FrozenError(ctx.stack.name, freeze.reason, freeze.by, freeze.at);
    history = record.history;
    const dbOptions = { approveDataLoss: options.approveDataLoss };
    const desired = await prepareApply(ctx, engine, "deploy", target, history, dbOptions);
    const { granted, plan, held } = await guardPlan(ctx, engine, { ...options, op: "deploy", target, history, desired, dbOptions, approvals: options.approvals ?? {}, what: target.version });
    const approvals = granted.map((g) => g.summary);
    if (onScratch) {
      // The guard previewed on the scratch stack (the database checks included): the real stack's update is held to that plan.
      const carried = carryPlan(held);
      planning.close();
      const salted = !!ctx.stack.settings.encryptionsalt;
      engine = await ctx.openEngine({ create: true });
      onScratch = false;
      carried(engine);
      const wroteSalt = !salted && !!ctx.stack.settings.encryptionsalt;
      options.onProgress?.({
        type: "phase",
        phase: "apply",
        message: `first deploy of stack ${ctx.stack.name}: created it in ${ctx.backendUrl}` +
          (wroteSalt ? `; wrote its passphrase salt (encryptionsalt) to ${ctx.stack.dir}/stack.yaml: commit it` : ""),
      });
    }
    try {
      const applied = await applyWith(ctx, engine, { op: "deploy", from: from(), to: target.version, who: ctx.actor, reason: options.message, approvals: recordOf(granted) }, target, history, desired, options, held);
      result = { ...applied, plan, approvals, ...(recovery.recovered ? { recovery } : {}) };
      const passed = !result.verification || result.verification.passed;
      await audit(ctx, engine, { op: "deploy", from: from(), to: target.version, result: passed ? "succeeded" : "failed", detail: `revision ${result.revision}${approvedBy(approvals)}${passed ? "" : `; verification failed: ${result.verification?.reason}`}` }, options);
      if (passed) return result;
      reason = result.verification?.reason ?? "verification failed";
      const db = result.database?.notes.length ? `; its database change ran: ${result.database.notes.join("; ")}` : "";
      failure = `${target.version} failed verification on stack ${ctx.stack.name}: ${reason}\n${target.version} was applied and is live${db}.`;
    } catch (err) {
      if (!(err instanceof ApplyFailedError)) throw err;
      await auditFailure(ctx, engine, { op: "deploy", from: from(), to: target.version }, err, options);
      if (!options.autoRollback) throw err;
      stage = err instanceof HealthGateFailedError || err instanceof NeverReadyError ? "readiness" : "update";
      reason = [err.detail, ...err.hints].join("\n");
      failure = err.message;
    }
  } catch (err) {
    // Nothing reached the backend while planning on a scratch stack, so there is no trail to write to.
    if (!(err instanceof ApplyFailedError) && !onScratch) await auditFailure(ctx, engine, { op: "deploy", from: from(), to: target.version }, err, options);
    throw err;
  } finally {
    if (onScratch) planning.close();
    else engine.close();
  }
  if (!options.autoRollback) throw new VerificationFailedError(ctx.stack.name, target.version, reason, undefined, { deploy: result });
  const goodVersion = lastGoodVersion(history, target.version);
  if (!goodVersion) {
    throw new VerificationFailedError(ctx.stack.name, target.version, `${reason}; no earlier version ever verified, so nothing to roll back to`, undefined, { deploy: result }, { failed: stage });
  }
  const what = failedAt(stage, target.version);
  options.onProgress?.({ type: "phase", phase: "rollback", message: `${what}; rolling back to ${goodVersion}` });
  let back;
  try {
    back = await rollback(ctx, {
      to: goodVersion,
      reason: `auto-rollback: ${what}: ${reason}`.slice(0, 300),
      approveDataLoss: options.approveDataLoss,
      approvals: options.approvals,
      onProgress: options.onProgress,
      onEngineEvent: options.onEngineEvent,
    });
  } catch (err) {
    const rollbackError = err instanceof StackpinError ? { code: err.code, exitCode: err.exitCode, message: err.message } : { message: (err as Error).message };
    // Going back loses data and nobody approved it: the rollback's plan was refused before it changed
    // anything, and the stack is as the failed deploy left it. The rollback to run is named.
    if (err instanceof DataLossApprovalRequiredError) {
      throw new AutoRollbackNeedsApprovalError(ctx.stack.name, target.version, failure, goodVersion, err.what, { deploy: result, rollbackError });
    }
    // Both stories matter to whoever is on call: why the deploy failed, and why going back did too.
    const why = err instanceof VerificationFailedError
      ? `${goodVersion} was applied and is live, but failed verification: ${err.reason}`
      : isRefusal(err)
        ? `it was refused before it changed anything: ${(err as Error).message.split("\n")[0].replace(/\s*Nothing was changed\.$/, "")}`
        : (err as Error).message.split("\n")[0];
    throw new VerificationFailedError(ctx.stack.name, target.version, reason, undefined, { deploy: result, rollbackError }, { failed: stage, rollbackFailure: why, rollbackTarget: goodVersion });
  }
  throw new VerificationFailedError(ctx.stack.name, target.version, reason, goodVersion, { deploy: result, rollback: back }, { failed: stage });
}
