import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import { ApprovalRequirement, approvalPolicyOf, approvalsNeeded, ApprovalStatement, signApproval } from "../policy/approvals";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { CannotApproveError, NotConfirmedError } from "../errors";
import type { VersionFile } from "../versions/schema";
import { planWith, readHistory } from "./apply";
import type { Plan } from "./plan";
import { readRanSecrets, resolveLive, resolveRollbackTarget, validateTargetEarly } from "./resolve";
import { liveState } from "../records/history-record";

/** Options for {@link approve}. */
export interface ApproveOptions extends ProgressOptions {
  /** The operation approved. */
  op: "deploy" | "rollback" | "restore";
  /** The version to deploy or roll back to (`v41`, `41`, `previous` for a rollback); a restore restores the live one. */
  to?: string;
  /** A restore's target: a time (ISO 8601) or a snapshot. */
  restore?: { time?: string; snapshot?: string };
  /** The approver's SSH private key (or its `.pub`, with the key in ssh-agent). */
  key: string;
  /** The approver's principal in the allowed signers; by default the key's own. */
  as?: string;
  /** How long the approval stays valid, in ms. */
  validForMs: number;
  /** Why, kept in the statement. */
  reason?: string;
  /** Where to write the approval; default `approval-<stack>-<op>-<to>-<id>.yaml` in the project directory. */
  out?: string;
  /**
   * An allowed-signers file overriding the stack policy's, as the operation would use.
   * @deprecated Give it as the machine policy's `allowedSigners` in `openEnvironment`.
   */
  allowedSigners?: string;
  /** Called with the plan before signing; false stops (raises {@link NotConfirmedError}). */
  confirm?: (plan: Plan) => Promise<boolean>;
  /** The clock (issue and expiry times); defaults to now. */
  now?: Date;
}

/** A written approval: the plan it covers, the signed statement, and its file. */
export interface ApproveResult {
  plan: Plan;
  statement: ApprovalStatement;
  file: string;
  /** The approval categories the policy in force (this machine's and the stack's) requires for this apply; empty when it needs none. */
  required: string[];
  /** The same, each with whose policy requires it (`machine`, `stack`). */
  requirements: ApprovalRequirement[];
  /** The machine policy in force (its file), when this machine has one. */
  machinePolicy?: string;
}

/**
 * Approves one apply: computes its plan exactly as the operation would (a preview; nothing changes),
 * shows it through `confirm`, signs a statement naming the plan's digest with the approver's SSH key,
 * and writes the approval file the operator passes with `--approval-file`.
 */
export async function approve(ctx: EnvironmentContext, options: ApproveOptions): Promise<ApproveResult> {
  const now = options.now ?? new Date();
  const policy = approvalPolicyOf(ctx, options.allowedSigners);
  const signers = policy.allowedSigners;
  if (!signers) throw new CannotApproveError(ctx.stack.name, "its policy names no allowedSigners, so no signed approval could be checked");
  if (options.op !== "restore" && options.to) validateTargetEarly(ctx, options.to);
  // A first deploy is approved against a scratch stack: approving creates nothing in the backend.
  const planning = options.op === "deploy" ? await ctx.openForPlan() : undefined;
  const engine = planning?.engine ?? (await ctx.openEngine({ create: false }));
  let plan: Plan;
  try {
    const history = await readHistory(engine);
    // Exactly the target the operation will apply: what ran for a rollback or a restore, the file for a deploy.
    let target: VersionFile;
    if (options.op !== "deploy") await readRanSecrets(ctx, history, options.op === "restore" ? (liveState(history).version ?? "") : (options.to ?? ""));
    if (options.op === "restore") target = resolveLive(ctx, history).version;
    else if (options.op === "rollback") target = resolveRollbackTarget(ctx, options.to ?? "", history).version;
    else target = ctx.store.version(ctx.stack, options.to ?? "");
    plan = await planWith(ctx, engine, options.op, target, history, options, options.op === "restore" ? { restore: options.restore } : {});
  } finally {
    if (planning) planning.close();
    else engine.close();
  }
  if (options.confirm && !(await options.confirm(plan))) throw new NotConfirmedError(ctx.stack.name, `approval of ${plan.op} to ${plan.to}`);
  const approval = await signApproval(ctx, { ...policy, allowedSigners: signers }, {
    key: path.resolve(options.key),
    approver: options.as,
    actor: ctx.actor,
    now,
    statement: {
      stack: plan.stack,
      operation: plan.op,
      from: plan.from,
      to: plan.to,
      planDigest: plan.planDigest,
      baseRevision: plan.baseRevision,
      expiresAt: new Date(now.getTime() + options.validForMs).toISOString(),
      reason: options.reason,
    },
  });
  const s = approval.statement;
  const file = path.resolve(ctx.projectDir, options.out ?? `approval-${s.stack}-${s.operation}-${s.to}-${s.id.slice(0, 8)}.yaml`);
  const head = [
    `# ${s.approver} approves ${s.operation} ${s.from ? `${s.from} -> ` : ""}${s.to} on stack ${s.stack}, plan ${s.planDigest}, until ${s.expiresAt}.`,
    "# Signed with ssh-keygen -Y sign (namespace stackpin-approval) over the statement as canonical JSON (RFC 8785);",
    "# any change to the statement voids it. Pass it with --approval-file; it is good for one apply.",
  ].join("\n");
  fs.writeFileSync(file, `${head}\n${stringify(JSON.parse(JSON.stringify(approval)), { lineWidth: 0 })}`);
  const requirements = approvalsNeeded(policy, plan.op, plan.database?.policy);
  return {
    plan,
    statement: s,
    file,
    required: requirements.map((r) => r.category),
    requirements,
    ...(policy.machine ? { machinePolicy: policy.machine } : {}),
  };
}
