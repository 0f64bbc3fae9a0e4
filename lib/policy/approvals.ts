/**
 * Approvals that prove who approved what. An approval is a statement (approver, stack, operation, from
 * and to versions, the digest of the plan the approver saw, the revision it was computed at, an expiry
 * and an id) signed with the approver's SSH key, as git signs commits: `ssh-keygen -Y sign` in the
 * `stackpin-approval` namespace, checked with `ssh-keygen -Y verify` against the allowed-signers file
 * the stack's policy names. An approval is good for one apply of one plan: the plan digest covers the
 * newest history revision, so any later update (the approved apply included) makes it stale, and the
 * ids of used approvals are kept in each update's record so a replay is named as one.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { canonicalize } from "json-canonicalize";
import { readYamlFile } from "../versions/yaml-input";
import * as z from "zod";
import type { EnvironmentContext } from "../environment";
import { ApprovalRequiredError, CannotApproveError } from "../errors";
import { HistoryEntry, liveState } from "../records/history-record";
import type { MachinePolicy } from "./machine-policy";
import type { DesiredState } from "../planning/desired-state";
import { planDigestFor } from "./plan-digest";
import { approvalCategorySchema, type ApprovalCategory, type Policy } from "../versions/schema";

/** The SSH signature namespace of approvals, so no other signature (a commit's, a file's) can pass for one. */
export const approvalNamespace = "stackpin-approval";

/** Approvals given to one command. */
export interface ApprovalInput {
  /** `--approve NAME`: an unsigned acknowledgement, accepted only when the policy names no approvers and no allowed signers. */
  approvers?: string[];
  /** Signed approval files, as `stackpin approve` writes them. */
  files?: string[];
  /**
   * An allowed-signers file that overrides the stack policy's, relative to the stack's directory.
   * @deprecated Give the machine's allowed signers in `openEnvironment`'s `machinePolicy`, which also pins
   * what needs approval; a machine policy's own `allowedSigners` wins over this.
   */
  allowedSigners?: string;
}

/** What an approver signs. */
export const approvalStatementSchema = z
  .object({
    kind: z.literal("stackpin-approval/1"),
    /** Unique per approval: a used id is recorded in history and never accepted again. */
    id: z.string().uuid(),
    /** The approver's principal in the allowed-signers file. */
    approver: z.string().min(1),
    stack: z.string().min(1),
    operation: z.enum(["deploy", "rollback", "restore"]),
    /** The live version when the plan was computed. */
    from: z.string().optional(),
    to: z.string().min(1),
    /** The digest of the plan the approver saw (see `lib/plan-digest.ts`). */
    planDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
    /** The newest history revision the plan was computed from. */
    baseRevision: z.number().int().min(0),
    issuedAt: z.string().datetime({ offset: true }),
    expiresAt: z.string().datetime({ offset: true }),
    reason: z.string().optional(),
  })
  .strict();

/** A signed approval's statement. */
export type ApprovalStatement = z.infer<typeof approvalStatementSchema>;

/** An approval file: the statement and the armored SSH signature over its canonical JSON (RFC 8785). */
export interface SignedApproval {
  statement: ApprovalStatement;
  signature: string;
}

/** An approval an operation accepted. */
export interface GrantedApproval {
  approver: string;
  /** The signed approval's id; absent for an unsigned `--approve NAME`. */
  id?: string;
  /** One line for output, the incident record and the audit trail. */
  summary: string;
}

/** The bytes an approver signs: the statement as canonical JSON, so formatting the file changes nothing. */
export function signedBytes(statement: unknown): string {
  return canonicalize(statement);
}

/** The approval categories an apply falls under, whatever the policy requires. */
export function categoriesOf(op: "deploy" | "rollback" | "restore", databasePolicy?: string): ApprovalCategory[] {
  const categories: ApprovalCategory[] = [op];
  if (databasePolicy === "point-in-time-restore") categories.push("restore");
  if (op === "rollback" && (databasePolicy === "down-migration" || databasePolicy === "point-in-time-restore")) categories.push("rollback-incompatible");
  return [...new Set(categories)];
}

/** Whose policy a rule comes from: this machine's (`lib/machine-policy.ts`) or the stack's `stack.yaml`. */
export type PolicySource = "machine" | "stack";

/** One category that needs an approval, and whose policies require it. */
export interface ApprovalRequirement {
  category: ApprovalCategory;
  by: PolicySource[];
}

/** The approval policy in force for one stack on one machine: the machine's and the stack's, merged. */
export interface ApprovalPolicy {
  /** What needs an approval, in a fixed order: the union of both policies' `require`. */
  require: ApprovalRequirement[];
  /** Who may approve (principals of `allowedSigners`); empty: any principal there. */
  approvers: string[];
  /** Whose policy named `approvers`; absent when neither did. */
  approversFrom?: PolicySource;
  /** The allowed-signers file approvals are checked against (absolute), if either policy names one. */
  allowedSigners?: string;
  /** Whose policy named `allowedSigners`. */
  allowedSignersFrom?: PolicySource;
  /** Only signed approvals count: an allowed-signers file is named. Otherwise `--approve NAME` is taken. */
  signed: boolean;
  /** The machine policy's source (its file), when this machine has one. */
  machine?: string;
}

/**
 * Merges the machine's approval policy with the stack's, the machine setting the minimum:
 * - `require` is the union: a stack adds to what the machine requires, and cannot remove any of it;
 * - the machine's `allowedSigners` replaces the stack's, so a key added to the repository's file counts
 *   for nothing on this machine;
 * - the machine's `approvers`, when it names some, replace the stack's; otherwise the stack's apply,
 *   which with the machine's allowed signers can only narrow who may approve (an approver must still
 *   hold a key in the machine's file).
 * A machine policy that requires anything names its own allowed signers (its schema holds this), so what
 * the machine requires is never satisfied by an unsigned `--approve NAME`.
 */
export function mergeApprovalPolicies(machine: MachinePolicy | undefined, stack: Policy["approvals"], stackDir: string): ApprovalPolicy {
  const m = machine?.approvals;
  const require = approvalCategorySchema.options.flatMap((category): ApprovalRequirement[] => {
    const by: PolicySource[] = [];
    if (m?.require.includes(category)) by.push("machine");
    if (stack?.require.includes(category)) by.push("stack");
    return by.length ? [{ category, by }] : [];
  });
  const [allowedSigners, allowedSignersFrom] =
    m?.allowedSigners !== undefined
      ? [m.allowedSigners, "machine" as const]
      : stack?.allowedSigners !== undefined
        ? [path.resolve(stackDir, stack.allowedSigners), "stack" as const]
        : [undefined, undefined];
  const [approvers, approversFrom] = m?.approvers.length
    ? [m.approvers, "machine" as const]
    : stack?.approvers.length
      ? [stack.approvers, "stack" as const]
      : [[], undefined];
  return {
    require,
    approvers,
    ...(approversFrom ? { approversFrom } : {}),
    ...(allowedSigners !== undefined ? { allowedSigners, allowedSignersFrom } : {}),
    signed: allowedSigners !== undefined || approvers.length > 0,
    ...(machine ? { machine: machine.source } : {}),
  };
}

/** What an apply needs approved under `policy`: its categories (see {@link categoriesOf}) that the policy requires. */
export function approvalsNeeded(policy: ApprovalPolicy, op: "deploy" | "rollback" | "restore", databasePolicy?: string): ApprovalRequirement[] {
  const categories = categoriesOf(op, databasePolicy);
  return policy.require.filter((r) => categories.includes(r.category));
}

/**
 * The approval policy in force for the stack on this machine: the context's machine policy merged with
 * the stack's (see {@link mergeApprovalPolicies}). `allowedSignersOverride` is the deprecated
 * {@link ApprovalInput.allowedSigners}, used only when the machine policy names no allowed signers.
 */
export function approvalPolicyOf(ctx: EnvironmentContext, allowedSignersOverride?: string): ApprovalPolicy {
  let machine = ctx.machinePolicy;
  if (allowedSignersOverride !== undefined && machine?.approvals.allowedSigners === undefined) {
    // Without allowed signers of its own, a machine policy requires nothing and names no approvers.
    machine = { source: machine?.source ?? "the allowedSigners option", approvals: { require: [], approvers: [], allowedSigners: path.resolve(ctx.stack.dir, allowedSignersOverride) } };
  }
  return mergeApprovalPolicies(machine, ctx.stack.settings.policy.approvals, ctx.stack.dir);
}

/** Why `--approve NAME` counts for nothing here: who signs, and on whose terms. */
function unsignedRefused(policy: ApprovalPolicy, stackName: string): string {
  return (policy.approversFrom ?? policy.allowedSignersFrom) === "machine"
    ? `this machine (${policy.machine}) takes only approvals signed with \`stackpin approve\` by a key in ${policy.allowedSigners}`
    : `stack ${stackName}'s approvers sign their approvals with \`stackpin approve\``;
}

/** `(required by the machine policy F)` when the machine requires some of `needed`: a user reading `stack.yaml` would not see why. */
function requiredByMachine(policy: ApprovalPolicy, needed: ApprovalRequirement[]): string | undefined {
  const byMachine = needed.filter((n) => n.by.includes("machine"));
  if (!byMachine.length) return undefined;
  const which = byMachine.length === needed.length ? "" : `${byMachine.map((n) => n.category).join(" + ")} `;
  return `${which}required by the machine policy ${policy.machine}`;
}

interface KeygenRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs ssh-keygen without a shell. Data goes through stdin or files, never the command line. Signing
 * inherits stdin so ssh-keygen can ask for a key's passphrase on the terminal.
 */
function sshKeygen(stackName: string, args: string[], options: { input?: string; inheritStdin?: boolean } = {}): Promise<KeygenRun> {
  return new Promise((resolve, reject) => {
    const child = spawn("ssh-keygen", args, { shell: false, stdio: [options.inheritStdin ? "inherit" : "pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "ENOENT"
          ? options.inheritStdin
            ? new CannotApproveError(stackName, "ssh-keygen is not on PATH (install openssh-client)")
            : new ApprovalRequiredError(stackName, "this apply (signed approvals are checked with ssh-keygen, which is not on PATH)", "ssh-keygen installed (openssh-client)")
          : err,
      ),
    );
    child.on("close", (code, signal) => resolve({ code: code ?? -1, stdout, stderr: stderr || (signal ? `killed by ${signal}` : "") }));
    if (!options.inheritStdin) {
      // ssh-keygen may exit before reading its input (find-principals never does): the exit code tells, not EPIPE.
      child.stdin!.on("error", () => undefined);
      child.stdin!.end(options.input ?? "");
    }
  });
}

function lastLine(text: string): string {
  return text.trim().split("\n").filter(Boolean).pop() ?? "";
}

/** A private scratch directory for signature files, removed after `fn`. */
async function withScratch<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-approval-"));
  try {
    return await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Why a signature does not prove that `approver` signed the statement, or `ok`. */
type SignatureCheck =
  | { ok: true }
  | { ok: false; kind: "altered" | "unknown-key" | "other-principal" | "refused"; principals: string[]; problem: string };

/**
 * Checks a signature in three steps, so the refusal says what is wrong: does it match the statement
 * (`check-novalidate`), is its key in the allowed signers and whose (`find-principals`), and does it
 * verify for the named approver under the file's rules (`verify`: namespaces, validity dates).
 */
async function checkSignature(stackName: string, bytes: string, signature: string, approver: string, allowedSigners: string): Promise<SignatureCheck> {
  return withScratch(async (dir) => {
    const sig = path.join(dir, "approval.sig");
    fs.writeFileSync(sig, signature.endsWith("\n") ? signature : `${signature}\n`);
    const check = await sshKeygen(stackName, ["-Y", "check-novalidate", "-n", approvalNamespace, "-s", sig], { input: bytes });
    if (check.code !== 0) {
      const why = lastLine(check.stderr);
      const altered = !why || /incorrect signature|verification failed/i.test(why);
      return {
        ok: false,
        kind: "altered",
        principals: [],
        problem: altered ? "altered after it was signed: the signature does not match the statement" : `its signature does not check (${why})`,
      };
    }
    const key = /with (\S+ key \S+)/.exec(check.stdout + check.stderr)?.[1] ?? "an unknown key";
    const found = await sshKeygen(stackName, ["-Y", "find-principals", "-s", sig, "-f", allowedSigners]);
    const principals = found.code === 0 ? found.stdout.split(/[\n,]/).map((p) => p.trim()).filter(Boolean) : [];
    if (principals.length === 0) {
      return { ok: false, kind: "unknown-key", principals, problem: `signed by a key that is not in the allowed signers ${allowedSigners} (${key})` };
    }
    if (!principals.includes(approver)) {
      return { ok: false, kind: "other-principal", principals, problem: `signed with the key of ${principals.join(", ")}, but it names ${approver} as the approver` };
    }
    const verify = await sshKeygen(stackName, ["-Y", "verify", "-f", allowedSigners, "-I", approver, "-n", approvalNamespace, "-s", sig], { input: bytes });
    if (verify.code !== 0) {
      return { ok: false, kind: "refused", principals, problem: `does not verify as ${approver}'s under ${allowedSigners}: ${lastLine(verify.stderr) || "refused"}` };
    }
    return { ok: true };
  });
}

/** `an approver of stack dev (approvers: …)` when the policy's approvers do not include `approver`; else undefined. */
function approverRefused(policy: ApprovalPolicy, approver: string, stackName: string): string | undefined {
  const approvers = policy.approvers;
  if (!approvers.length || approvers.includes(approver)) return undefined;
  return policy.approversFrom === "machine"
    ? `an approver on this machine (machine policy ${policy.machine}: approvers ${approvers.join(", ")})`
    : `an approver of stack ${stackName} (approvers: ${approvers.join(", ")})`;
}

/** The approvals each update of `history` used, by id. */
function usedApprovals(history: HistoryEntry[]): Map<string, HistoryEntry> {
  const used = new Map<string, HistoryEntry>();
  for (const h of history) for (const a of h.approvals ?? []) if (!used.has(a.id)) used.set(a.id, h);
  return used;
}

/** What an approval must match: the apply about to happen. */
export interface ApprovalRequest {
  op: "deploy" | "rollback" | "restore";
  /** The target version. */
  to: string;
  /** The stack's history, newest first, as the operation read it. */
  history: HistoryEntry[];
  /** What the operation is about to apply. */
  desired: DesiredState;
  /** The clock; defaults to now. */
  now?: Date;
}

/** Reads and checks one approval file; returns the grant, or the problem in words. */
async function checkApprovalFile(
  ctx: EnvironmentContext,
  file: string,
  request: ApprovalRequest,
  policy: ApprovalPolicy & { allowedSigners: string },
  current: { planDigest: string; baseRevision: number },
): Promise<GrantedApproval | string> {
  const allowedSigners = policy.allowedSigners;
  // The same parse, with the same size, depth and alias limits, as every other YAML file a user hands us.
  const doc = readYamlFile(file);
  const body = (doc ?? {}) as { statement?: unknown; signature?: unknown; approvedBy?: unknown };
  if (typeof body !== "object" || !body.statement || typeof body.statement !== "object") {
    return body && typeof body === "object" && "approvedBy" in body
      ? "not signed: an unsigned approval proves nothing (anyone can write one); the approver signs with `stackpin approve`"
      : "not signed: it holds no signed approval statement (`stackpin approve` writes one)";
  }
  if (typeof body.signature !== "string" || !body.signature.includes("BEGIN SSH SIGNATURE")) {
    return "not signed: it has no SSH signature; the approver signs with `stackpin approve`";
  }
  const claimed = (body.statement as { approver?: unknown }).approver;
  const signature = await checkSignature(ctx.stack.name, signedBytes(body.statement), body.signature, typeof claimed === "string" ? claimed : "", allowedSigners);
  if (!signature.ok) return signature.problem;
  const parsed = approvalStatementSchema.safeParse(body.statement);
  if (!parsed.success) return `signed, but not an approval statement (${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")})`;
  const s = parsed.data;
  const name = ctx.stack.name;
  const notApprover = approverRefused(policy, s.approver, name);
  if (notApprover) return `signed by ${s.approver}, who is not ${notApprover}`;
  const usedBy = usedApprovals(request.history).get(s.id);
  if (usedBy) {
    return `already used: approval ${s.id} by ${s.approver} was used by revision ${usedBy.revision} (${usedBy.op} ${usedBy.from ? `${usedBy.from} -> ` : ""}${usedBy.to ?? ""}); a replayed approval is refused, an approval is good for one apply`;
  }
  if (s.stack !== name) return `for stack ${s.stack}, not ${name}`;
  if (s.operation !== request.op) return `for a ${s.operation}, not a ${request.op}`;
  if (s.to !== request.to) return `for ${s.operation} to ${s.to}, not to ${request.to}`;
  const live = liveState(request.history).version;
  if ((s.from ?? "") !== (live ?? "")) return `for ${s.operation} from ${s.from ?? "(nothing live)"}, but ${live ?? "nothing"} is live now`;
  const now = request.now ?? new Date();
  if (Date.parse(s.expiresAt) <= now.getTime()) return `expired at ${s.expiresAt}`;
  if (s.baseRevision !== current.baseRevision) {
    return `the plan changed since it was approved: it was approved at revision ${s.baseRevision} and the stack is now at revision ${current.baseRevision}; ask ${s.approver} for a new approval of the plan now`;
  }
  if (s.planDigest !== current.planDigest) {
    return `the plan changed since it was approved: ${s.approver} approved plan ${s.planDigest.slice(0, 19)}…, the plan now is ${current.planDigest.slice(0, 19)}… (a version file or the stack's config changed; \`stackpin preview\` shows the plan now)`;
  }
  return { approver: s.approver, id: s.id, summary: `${s.approver} (signed approval ${s.id}, ${path.basename(file)}, until ${s.expiresAt})` };
}

/**
 * Checks the approvals an apply needs under the policy in force (this machine's and the stack's, see
 * {@link approvalPolicyOf}). Returns the approvals accepted, or raises {@link ApprovalRequiredError}
 * saying what each given approval lacks, and naming the machine policy when it is what requires one.
 * Refusals happen before anything changes. A policy with allowed signers or approvers takes only signed
 * approvals; one naming neither takes `--approve NAME`, an acknowledgement that proves nothing.
 */
export async function checkApprovals(ctx: EnvironmentContext, request: ApprovalRequest, input: ApprovalInput): Promise<GrantedApproval[]> {
  const policy = approvalPolicyOf(ctx, input.allowedSigners);
  const needed = approvalsNeeded(policy, request.op, request.desired.database?.plan.policy);
  if (needed.length === 0) return [];
  const name = ctx.stack.name;
  const signers = policy.allowedSigners;
  const categories = needed.map((n) => n.category);
  const granted: GrantedApproval[] = [];
  const problems: string[] = [];
  for (const who of input.approvers ?? []) {
    if (policy.signed) problems.push(`--approve ${who} proves nothing: ${unsignedRefused(policy, name)}`);
    else granted.push({ approver: who, summary: `${who} (--approve, unsigned: ${categories.join(", ")})` });
  }
  const files = input.files ?? [];
  if (files.length && signers === undefined) problems.push(`${files.join(", ")}: cannot be checked: stack ${name}'s policy names no allowedSigners`);
  else if (files.length && !fs.existsSync(signers!)) problems.push(`the allowed signers file ${signers} does not exist`);
  else if (files.length) {
    const current = planDigestFor(name, request.op, request.to, request.history, request.desired);
    for (const file of files) {
      const r = await checkApprovalFile(ctx, file, request, { ...policy, allowedSigners: signers! }, current);
      if (typeof r === "string") problems.push(`${file}: ${r}`);
      else granted.push(r);
    }
  }
  if (granted.length === 0) {
    const who = policy.approvers.length ? `one of ${policy.approvers.join(", ")}` : `a principal of ${signers}`;
    const why = [requiredByMachine(policy, needed), ...problems].filter(Boolean);
    throw new ApprovalRequiredError(
      name,
      `this ${categories.join(" + ")}${why.length ? ` (${why.join("; ")})` : ""}`,
      policy.signed ? `--approval-file FILE, an approval signed by ${who} (\`stackpin approve --stack ${name} --op ${request.op} --to ${request.to} --key KEY\`)` : "--approve NAME",
    );
  }
  return granted;
}

/** The used approvals to keep in the update's record, or undefined when none was signed. */
export function recordOf(granted: GrantedApproval[]): Array<{ id: string; approver: string }> | undefined {
  const signed = granted.flatMap((g) => (g.id ? [{ id: g.id, approver: g.approver }] : []));
  return signed.length ? signed : undefined;
}

/** What {@link signApproval} needs. */
export interface SignApprovalOptions {
  /** The statement, without `id`, `approver`, `issuedAt` (filled in here). */
  statement: Omit<ApprovalStatement, "kind" | "id" | "approver" | "issuedAt">;
  /** The private key file (or its `.pub`, with the key in ssh-agent). */
  key: string;
  /** The approver's principal; found from the key in the allowed signers when absent. */
  approver?: string;
  /** Who is acting, tried first as the principal. */
  actor: string;
  now: Date;
}

/**
 * Signs an approval statement with `ssh-keygen -Y sign` and checks the result as an operation would
 * under `policy` (its allowed signers and approvers), so no approval that would be refused for its
 * signature or its approver is written. Without `approver`, the key's principal in the allowed signers is used.
 */
export async function signApproval(ctx: EnvironmentContext, policy: ApprovalPolicy & { allowedSigners: string }, options: SignApprovalOptions): Promise<SignedApproval> {
  const name = ctx.stack.name;
  const allowedSigners = policy.allowedSigners;
  if (!fs.existsSync(options.key)) throw new CannotApproveError(name, `the key ${options.key} does not exist`);
  if (!fs.existsSync(allowedSigners)) throw new CannotApproveError(name, `the allowed signers file ${allowedSigners} does not exist`);
  const id = randomUUID();
  const sign = async (approver: string): Promise<{ approval: SignedApproval; check: SignatureCheck }> => {
    const { expiresAt, ...rest } = options.statement;
    const statement: ApprovalStatement = { kind: "stackpin-approval/1", id, approver, ...rest, issuedAt: options.now.toISOString(), expiresAt };
    const bytes = signedBytes(statement);
    const signature = await withScratch(async (dir) => {
      const file = path.join(dir, "statement.json");
      fs.writeFileSync(file, bytes, { mode: 0o600 });
      const r = await sshKeygen(name, ["-Y", "sign", "-f", options.key, "-n", approvalNamespace, file], { inheritStdin: true });
      if (r.code !== 0 || !fs.existsSync(`${file}.sig`)) {
        throw new CannotApproveError(name, `ssh-keygen could not sign with ${options.key}: ${lastLine(r.stderr) || `exit ${r.code}`} (a key with a passphrase needs a terminal or ssh-agent)`);
      }
      return fs.readFileSync(`${file}.sig`, "utf8");
    });
    return { approval: { statement, signature }, check: await checkSignature(name, bytes, signature, approver, allowedSigners) };
  };
  let { approval, check } = await sign(options.approver ?? options.actor);
  // Without --as, the key's own principal is the approver: sign again under it.
  if (!check.ok && check.kind === "other-principal" && !options.approver && check.principals.length === 1) {
    ({ approval, check } = await sign(check.principals[0]));
  }
  if (!check.ok) {
    const hint = check.kind === "other-principal" && check.principals.length > 1 ? ` (pick one with --as: ${check.principals.join(", ")})` : "";
    throw new CannotApproveError(name, `the approval would be refused: ${check.problem}${hint}`);
  }
  const notApprover = approverRefused(policy, approval.statement.approver, name);
  if (notApprover) throw new CannotApproveError(name, `${approval.statement.approver} is in the allowed signers but not ${notApprover}`);
  return approval;
}

/** `; approved by …` for an audit entry's detail, or nothing. */
export function approvedBy(summaries: string[]): string {
  return summaries.length ? `; approved by ${summaries.join("; ")}` : "";
}
