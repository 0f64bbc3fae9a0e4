import { ApprovalInput, checkApprovals, GrantedApproval } from "../policy/approvals";
import type { EngineStack } from "../engine/stack";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { NotConfirmedError } from "../errors";
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

/** What the guard let through: the approvals accepted, and the plan that was shown and confirmed. */
export interface Guarded {
  granted: GrantedApproval[];
  /** The confirmed plan (its update plan holds the apply to it); absent when nothing asked. */
  plan?: Plan;
}

/**
 * The one guard of deploy, rollback, restore and retention: the approvals the plan needs (from what it
 * does: its operation and its database change), then the plan previewed from the same desired state and
 * confirmed. Raises the typed refusal and changes nothing when either says no.
 */
export async function guardPlan(ctx: EnvironmentContext, engine: EngineStack, request: GuardRequest): Promise<Guarded> {
  const { op, target, history, desired } = request;
  const granted = request.approvals ? await checkApprovals(ctx, { op, to: target.version, history, desired }, request.approvals) : [];
  if (!request.confirm) return { granted };
  const plan = await planWith(ctx, engine, op, target, history, request, request.dbOptions, desired, request.warnings ?? []);
  request.onPlan?.(plan);
  if (!(await request.confirm(plan))) throw new NotConfirmedError(ctx.stack.name, request.what);
  return { granted, plan };
}
