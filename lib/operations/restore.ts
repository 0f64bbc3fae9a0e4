import { ApprovalInput, approvedBy, recordOf } from "../policy/approvals";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { audit, auditFailure } from "../records/trail";
import { ApplyResult, applyWith, prepareApply, readHistory } from "./apply";
import type { Plan } from "./plan";
import { guardPlan } from "./guard";
import { recoverInterrupted } from "./recover";
import { fileDiffersWarning, readRanSecrets, resolveLive } from "./resolve";
import { liveState } from "../records/history-record";

/** Options for {@link restore}. Give `time` or `snapshot`. */
export interface RestoreOptions extends ProgressOptions {
  /** Restore to this time (ISO 8601); the newest snapshot taken before it is the base. */
  time?: string;
  /** Restore to the moment this snapshot was taken. */
  snapshot?: string;
  /** Required: a restore loses every write after its target time. */
  approveDataLoss?: boolean;
  reason?: string;
  /** Called with the plan before anything changes; false stops. */
  confirm?: (plan: Plan) => Promise<boolean>;
  /** Approvals the stack's policy may require. */
  approvals?: ApprovalInput;
}

/**
 * Restores the stack's database to a point in time (or a snapshot) as a resource, and points the live
 * version's app at it. Recorded as a new `restore` entry in history and in the audit trail.
 */
export async function restore(ctx: EnvironmentContext, options: RestoreOptions): Promise<ApplyResult & { plan?: Plan; approvals: string[] }> {
  const request = { restore: { time: options.time, snapshot: options.snapshot }, approveDataLoss: options.approveDataLoss };
  const engine = await ctx.openEngine({ create: false });
  let live: string | undefined;
  try {
    await recoverInterrupted(ctx, engine, options);
    const history = await readHistory(engine);
    // The live version as it ran, never its file as it may have been edited since.
    await readRanSecrets(ctx, history, liveState(history).version ?? "");
    const ran = resolveLive(ctx, history);
    const target = ran.version;
    live = target.version;
    const desired = await prepareApply(ctx, engine, "restore", target, history, request);
    const { granted, plan, held } = await guardPlan(ctx, engine, {
      ...options,
      op: "restore",
      target,
      history,
      desired,
      dbOptions: request,
      approvals: options.approvals ?? {},
      warnings: fileDiffersWarning(ran),
      what: `restore of ${live}`,
    });
    const approvals = granted.map((g) => g.summary);
    const result = await applyWith(ctx, engine, { op: "restore", from: live, to: live, who: ctx.actor, reason: options.reason, approvals: recordOf(granted) }, target, history, desired, options, held);
    await audit(ctx, engine, { op: "restore", from: live, to: live, result: "succeeded", detail: `to ${desired.database?.plan.restore?.time} from ${desired.database?.plan.restore?.snapshot}${approvedBy(approvals)}` }, options);
    return { ...result, plan, approvals };
  } catch (err) {
    await auditFailure(ctx, engine, { op: "restore", to: live }, err, options);
    throw err;
  } finally {
    engine.close();
  }
}
