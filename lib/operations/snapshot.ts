import type { EnvironmentContext, ProgressOptions } from "../environment";
import { FrozenError } from "../errors";
import { audit, auditFailure } from "../records/trail";
import { ApplyResult, applyWith, prepareApply, readHistoryAndTags } from "./apply";
import { guardPlan } from "./guard";
import { recoverInterrupted } from "./recover";
import { fileDiffersWarning, readRanSecrets, resolveLive } from "./resolve";
import { liveState } from "../records/history-record";
import type { Plan } from "./plan";

/** Options for {@link removeSnapshot}. */
export interface RemoveSnapshotOptions extends ProgressOptions {
  /** The snapshot (`pre-v3`) or restored database (`restore-pre-v3-2026...`) to remove; never the live database. */
  name: string;
  /** Required: the base backup or the restored database and everything written to it are deleted. */
  approveDataLoss?: boolean;
  reason?: string;
  /** Called with the plan (it shows the deletion) before anything changes; false stops. */
  confirm?: (plan: Plan) => Promise<boolean>;
}

/**
 * The approved retention step: removes one snapshot or one restored database that is no longer live from
 * the stack, through the engine (the plan shows the deletion). Without `approveDataLoss` it raises
 * {@link ApprovalRequiredError} and changes nothing. Recorded in history as a re-apply of the live version.
 */
export async function removeSnapshot(ctx: EnvironmentContext, options: RemoveSnapshotOptions): Promise<ApplyResult & { plan?: Plan; removed: string }> {
  const request = { remove: options.name, approveDataLoss: options.approveDataLoss };
  const engine = await ctx.openEngine({ create: false });
  let live: string | undefined;
  try {
    // Like every apply: an interrupted operation is recovered first, and a freeze holds.
    await recoverInterrupted(ctx, engine, options);
    const { history, records } = await readHistoryAndTags(engine);
    if (records.freeze) throw new FrozenError(ctx.stack.name, records.freeze.reason, records.freeze.by, records.freeze.at);
    // What runs now is re-applied with the removal, never the live version's file as it may be now.
    await readRanSecrets(ctx, history, liveState(history).version ?? "");
    const ran = resolveLive(ctx, history);
    const target = ran.version;
    live = target.version;
    const desired = await prepareApply(ctx, engine, "deploy", target, history, request);
    // What runs is re-applied with one backup fewer: no config that never ran, so no deploy approval; the
    // deletion itself is what --approve-data-loss (asked by the database plan) approves.
    const { plan, held } = await guardPlan(ctx, engine, { ...options, op: "deploy", target, history, desired, dbOptions: request, warnings: fileDiffersWarning(ran), what: `removal of ${options.name}` });
    const reason = `retention: remove ${options.name}${options.reason ? `: ${options.reason}` : ""}`;
    const result = await applyWith(ctx, engine, { op: "deploy", from: live, to: live, who: ctx.actor, reason }, target, history, desired, options, held);
    await audit(ctx, engine, { op: "deploy", from: live, to: live, result: "succeeded", detail: reason }, options);
    return { ...result, plan, removed: options.name };
  } catch (err) {
    await auditFailure(ctx, engine, { op: "deploy", to: live }, err, options);
    throw err;
  } finally {
    engine.close();
  }
}
