import { ApprovalInput, checkApprovals, GrantedApproval } from "../policy/approvals";
import type { EngineStack } from "../engine/stack";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { DataLossApprovalRequiredError, NotConfirmedError } from "../errors";
import type { HistoryEntry } from "../records/history-record";
import type { VersionFile } from "../versions/schema";
import { DatabaseOptions, DesiredState, planWith } from "./apply";
import type { Plan } from "./plan";

/** What every apply is guarded by before it runs, whatever its verb. */
export interface GuardRequest extends ProgressOptions {
  op: Plan["op"];
  /** The version applied, as the plan will apply it (for a rollback: as it ran). */
  target: VersionFile;
  history: HistoryEntry[];
  /** The desired state computed once for this apply: the plan shown and the apply are this value. */
  desired: DesiredState;
  dbOptions: DatabaseOptions;
  /** The approvals given; absent when the step needs none beyond `--approve-data-loss` (a retention step). */
  approvals?: ApprovalInput;
  /** Shown the plan before anything changes; false stops with {@link NotConfirmedError}. */
  confirm?: (plan: Plan) => Promise<boolean>;
  /** Called with the plan before it is confirmed (an incident keeps its diff). */
  onPlan?: (plan: Plan) => void;
  /** Warnings found while choosing the target (a file that differs from what ran). */
  warnings?: string[];
  /** What a refusal to confirm names: `v41`, `restore of v41`, `removal of pre-v3`. */
  what: string;
}

/** What the guard let through: the approvals accepted, and the plan the apply is held to. */
export interface Guarded {
  granted: GrantedApproval[];
  /** The plan shown and confirmed; absent when nothing asked (`--yes`). */
  plan?: Plan;
  /** The plan the engine previewed for this apply (the confirmed one when asked): its saved update plan holds the apply to it. */
  held: Plan;
}

/**
 * The one guard of deploy, rollback, restore and retention, deciding from what the plan does rather than
 * from the verb: the approvals the plan needs (its operation and its database change), then the engine's
 * preview of the same desired state, saved as the update plan the apply is held to. A plan whose steps
 * delete a data-holding resource (neither kept on delete nor protected) needs `--approve-data-loss`, and
 * the refusal names each one. Then the plan is shown and confirmed when asked. Raises the typed refusal
 * and changes nothing when any of them says no.
 */
export async function guardPlan(ctx: EnvironmentContext, engine: EngineStack, request: GuardRequest): Promise<Guarded> {
  const { op, target, history, desired } = request;
  const granted = request.approvals ? await checkApprovals(ctx, { op, to: target.version, history, desired }, request.approvals) : [];
  const plan = await planWith(ctx, engine, op, target, history, request, request.dbOptions, desired, request.warnings ?? []);
  if (plan.dataAtRisk.length && !request.dbOptions.approveDataLoss) {
    const named = plan.dataAtRisk.map((d) => `${d.label} (in ${d.where})`).join(", ");
    throw new DataLossApprovalRequiredError(ctx.stack.name, `${request.what} deletes data: ${named}`);
  }
  if (!request.confirm) return { granted, held: plan };
  request.onPlan?.(plan);
  if (!(await request.confirm(plan))) throw new NotConfirmedError(ctx.stack.name, request.what);
  return { granted, plan, held: plan };
}
