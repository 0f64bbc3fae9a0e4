import * as fs from "node:fs";
import { parse } from "yaml";
import { z } from "zod";
import { ApprovalRequiredError, InvalidVersionFileError } from "./errors";
import type { DesiredState } from "./operations/apply";
import { describeIssues, Policy } from "./versions/schema";

/** Approvals given to one command: names (`--approve NAME`) and approval files. */
export interface ApprovalInput {
  approvers?: string[];
  files?: string[];
}

/** An approval file, e.g. written by an incident commander and passed with `--approval-file`. */
export const approvalFileSchema = z
  .object({
    approvedBy: z.string().min(1),
    stack: z.string().min(1),
    /** The operations approved: deploy, rollback, restore, rollback-incompatible. */
    operations: z.array(z.enum(["deploy", "rollback", "restore", "rollback-incompatible"])).min(1),
    expiresAt: z.string().datetime({ offset: true }).optional(),
    reason: z.string().optional(),
  })
  .strict();

/** The approval categories an apply falls under, whatever the policy requires. */
export function categoriesOf(op: "deploy" | "rollback" | "restore", desired: DesiredState): string[] {
  const categories: string[] = [op];
  const policy = desired.database?.plan.policy;
  if (policy === "point-in-time-restore") categories.push("restore");
  if (op === "rollback" && (policy === "down-migration" || policy === "point-in-time-restore")) categories.push("rollback-incompatible");
  return [...new Set(categories)];
}

/**
 * Checks the approvals an apply needs under the stack's policy. Returns who approved (with what), or
 * raises {@link ApprovalRequiredError} saying what is missing. Refusals happen before anything changes.
 */
export function checkApprovals(
  stack: string,
  policy: Policy["approvals"],
  categories: string[],
  input: ApprovalInput,
  now = new Date(),
): string[] {
  const needed = categories.filter((c) => policy?.require.includes(c as never));
  if (needed.length === 0) return [];
  const allowed = (who: string) => !policy!.approvers.length || policy!.approvers.includes(who);
  const granted: string[] = [];
  const problems: string[] = [];
  for (const who of input.approvers ?? []) {
    if (allowed(who)) granted.push(`${who} (--approve: ${needed.join(", ")})`);
    else problems.push(`${who} is not an approver (approvers: ${policy!.approvers.join(", ")})`);
  }
  for (const file of input.files ?? []) {
    let parsed;
    try {
      parsed = approvalFileSchema.safeParse(parse(fs.readFileSync(file, "utf8")));
    } catch (err) {
      throw new InvalidVersionFileError(file, [(err as Error).message.split("\n")[0]]);
    }
    if (!parsed.success) throw new InvalidVersionFileError(file, describeIssues(parsed.error));
    const a = parsed.data;
    const missing = needed.filter((n) => !a.operations.includes(n as never));
    if (a.stack !== stack) problems.push(`${file} approves stack ${a.stack}, not ${stack}`);
    else if (a.expiresAt && new Date(a.expiresAt) < now) problems.push(`${file} expired at ${a.expiresAt}`);
    else if (!allowed(a.approvedBy)) problems.push(`${file}: ${a.approvedBy} is not an approver`);
    else if (missing.length) problems.push(`${file} does not approve ${missing.join(", ")}`);
    else granted.push(`${a.approvedBy} (file ${file}: ${a.operations.join(", ")})`);
  }
  if (granted.length === 0) {
    const who = policy!.approvers.length ? ` from one of ${policy!.approvers.join(", ")}` : "";
    throw new ApprovalRequiredError(
      stack,
      `this ${needed.join(" + ")}${problems.length ? ` (${problems.join("; ")})` : ""}`,
      `--approve NAME or --approval-file FILE${who}`,
    );
  }
  return granted;
}
