/**
 * The deploy machine's own policy: the minimum this machine requires, whatever the repository says. A
 * stack's `stack.yaml` lives in the repository, where anyone who can push may delete its `require`; a
 * file kept on the machine, outside the repository, cannot be edited that way:
 *
 * ```yaml
 * # /etc/stackpin/policy.yaml (the CLI reads it from STACKPIN_MACHINE_POLICY)
 * approvals:
 *   require: [deploy, rollback]       # at least these, on every stack this machine runs
 *   allowedSigners: allowed_signers   # relative to this file, or absolute
 *   approvers: [alice, bob]           # optional: principals of allowedSigners
 * ```
 *
 * A stack's policy can add to `require`, never remove from it; the machine's `allowedSigners` and
 * `approvers` replace the stack's. How the two merge is `mergeApprovalPolicies` in `lib/approvals.ts`.
 */
import * as path from "node:path";
import * as z from "zod";
import { InvalidMachinePolicyError, InvalidVersionFileError } from "../errors";
import { approvalCategorySchema, describeIssues } from "../versions/schema";
import { readYamlFile } from "../versions/yaml-input";

const approvalsFields = {
  /** What needs an approval on this machine, whatever a stack's policy says. */
  require: z.array(approvalCategorySchema).default([]),
  /** Who may approve on this machine: principals of `allowedSigners`. Empty: any principal there (or the stack's `approvers`, which can only narrow it). */
  approvers: z.array(z.string().min(1)).default([]),
  /** The SSH allowed-signers file approvals are checked against on this machine, instead of the stack's. */
  allowedSigners: z.string().min(1).optional(),
};

/** The machine policy file as written: `allowedSigners` may be relative to the file. */
export const machinePolicyFileSchema = z
  .object({
    approvals: z.object(approvalsFields).strict().prefault({}),
  })
  .strict();

/**
 * A machine policy as operations use it (what {@link readMachinePolicy} returns, and what a library
 * caller passes to `openEnvironment`): paths absolute, and approvals that can only be signed ones.
 */
export const machinePolicySchema = z
  .object({
    /** Where the policy came from (its file), named in refusals. */
    source: z.string().min(1),
    approvals: z
      .object({ ...approvalsFields, allowedSigners: approvalsFields.allowedSigners.refine((f) => f === undefined || path.isAbsolute(f), "an absolute path") })
      .strict()
      .refine((a) => a.approvers.length === 0 || a.allowedSigners !== undefined, {
        message: "approvers sign their approvals: name the allowed-signers file holding their keys in allowedSigners",
        path: ["allowedSigners"],
      })
      // An unsigned `--approve NAME` proves nothing, and signers listed in the repository are as easy to
      // edit as the `require` this policy exists to pin: a machine that requires approvals checks them
      // against a file of its own.
      .refine((a) => a.require.length === 0 || a.allowedSigners !== undefined, {
        message:
          "a machine that requires approvals checks them against its own allowed signers: name that file in allowedSigners " +
          "(an unsigned --approve NAME, or signers listed in the repository, would let whoever edits the repository approve)",
        path: ["allowedSigners"],
      })
      .prefault({}),
  })
  .strict();

/** A machine policy as a caller writes it (defaults may be left out). */
export type MachinePolicyInput = z.input<typeof machinePolicySchema>;
/** A validated machine policy, defaults filled in. */
export type MachinePolicy = z.output<typeof machinePolicySchema>;

function issues(error: z.ZodError): string[] {
  return describeIssues(error).map((line) => line.replace(/^\(file\): /, ""));
}

/** Validates a machine policy given in code; raises {@link InvalidMachinePolicyError} (exit 5) naming its source. */
export function checkMachinePolicy(policy: MachinePolicyInput): MachinePolicy {
  const parsed = machinePolicySchema.safeParse(policy);
  if (!parsed.success) throw new InvalidMachinePolicyError(typeof policy?.source === "string" ? policy.source : "(given in code)", issues(parsed.error));
  return parsed.data;
}

/** What {@link readMachinePolicy} may be given besides the file. */
export interface ReadMachinePolicyOptions {
  /**
   * The machine's allowed-signers file set elsewhere (the CLI's `STACKPIN_ALLOWED_SIGNERS`), absolute:
   * used when the file names none; one naming another file is refused.
   */
  allowedSigners?: { file: string; from: string };
}

/**
 * Reads the machine policy file, with the same YAML limits as every file a user hands stackpin, and
 * validates it. Anything wrong (unreadable, not YAML, an unknown key or category, approvals required
 * with no allowed signers of the machine's own) raises {@link InvalidMachinePolicyError}: exit 5, and no
 * command goes on as if the policy were absent.
 */
export function readMachinePolicy(file: string, options: ReadMachinePolicyOptions = {}): MachinePolicy {
  const source = path.resolve(file);
  let doc: unknown;
  try {
    doc = readYamlFile(source);
  } catch (err) {
    if (err instanceof InvalidVersionFileError) throw new InvalidMachinePolicyError(source, err.problems.map((p) => p.replace(/^\(file\): /, "")));
    throw err;
  }
  const parsed = machinePolicyFileSchema.safeParse(doc ?? {});
  if (!parsed.success) throw new InvalidMachinePolicyError(source, issues(parsed.error));
  const own = parsed.data.approvals.allowedSigners;
  const ownFile = own === undefined ? undefined : path.resolve(path.dirname(source), own);
  const other = options.allowedSigners;
  if (ownFile !== undefined && other !== undefined && path.resolve(other.file) !== ownFile) {
    throw new InvalidMachinePolicyError(source, [
      `approvals.allowedSigners: names ${ownFile}, but ${other.from} names ${other.file}; a machine has one allowed-signers file, so keep one of the two`,
    ]);
  }
  return checkMachinePolicy({ source, approvals: { ...parsed.data.approvals, allowedSigners: ownFile ?? other?.file } });
}
