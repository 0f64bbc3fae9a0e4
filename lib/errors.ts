/**
 * Every failure a user can cause or meet has its own class, carrying the stack, the version and the next
 * step in its message, and exactly one process exit code (see {@link ExitCode} and the README's table).
 */

/** Exit codes of the `stackpin` CLI. Stable: scripts may rely on them. */
export const ExitCode = {
  /** Success. */
  ok: 0,
  /** A bug in stackpin (`STACKPIN_DEBUG=1` prints the stack trace). */
  internal: 1,
  /** A missing or unknown flag, or an argument naming nothing the stack has. */
  usage: 2,
  /** No `stacks/<stack>/stack.yaml`, or a stack never deployed to the backend. */
  unknownStack: 3,
  /** An unknown version, `previous` with nothing to go back to, or a rollback to a version that never ran. */
  unknownVersion: 4,
  /** A version file, `stack.yaml`, the machine policy or a program named by path cannot be used. */
  invalidVersionFile: 5,
  /** The passphrase is missing or wrong, or the KMS secrets provider cannot be used. */
  missingPassphrase: 6,
  /** Another operation holds the stack, or the stack changed since the plan was made. */
  concurrentOperation: 7,
  /** The engine ran and failed: an update (recorded in history as failed), a preview or a read. */
  applyFailed: 8,
  /** Not confirmed: declined, or no terminal to ask on and no `--yes`. */
  notConfirmed: 9,
  /** No usable Pulumi CLI. */
  pulumiUnavailable: 10,
  /** The version failed its health gate or its verification after the apply. */
  verificationFailed: 11,
  /** An approval (signed, or `--approve-data-loss`) is missing or refused. */
  approvalRequired: 12,
  /** The database is unreachable, or a restore is impossible, found before anything applied. */
  databaseUnavailable: 13,
  /** Deploys to the stack are frozen. */
  frozen: 14,
  /** `watch`: a trigger fired and no rollback ran (no `--auto-rollback`, or a guard of the policy withheld it). */
  triggerFired: 15,
  /** `audit verify`: the audit trail was edited, reordered or truncated. */
  auditBroken: 16,
  /** A fleet rollback where not every stack succeeded. */
  fleetIncomplete: 17,
  /** The backend's storage cannot keep stackpin's records safely: an `s3://` store that ignores conditional writes. */
  backendUnsupported: 18,
  /** `check`: a way back asked about cannot be taken now (a leg failed: the database's restore path, a secret that no longer decrypts, a missing artifact...). */
  notReady: 19,
} as const;

/** One of the {@link ExitCode} values. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** Base class of every error stackpin raises on purpose; `exitCode` is what the CLI exits with. */
export abstract class StackpinError extends Error {
  /** The code the CLI exits with for this failure (one per class). */
  abstract readonly exitCode: ExitCodeValue;
  /** A short machine-readable name, used in `--json` error documents. */
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * What a failure is, as `--json` reports it (`{ error: { code, message, details } }`) and a fleet passes
 * on per stack: its machine-readable name, the exit code, the message and the error's `details`, if any.
 */
export interface ErrorReport {
  code: string;
  exitCode: ExitCodeValue;
  message: string;
  details?: unknown;
}

/**
 * The {@link ErrorReport} of anything thrown: a {@link StackpinError} reports its own code and exit code;
 * anything else is a bug in stackpin (`internal`, exit 1).
 */
export function errorReport(e: unknown): ErrorReport {
  if (e instanceof StackpinError) {
    const details = (e as { details?: unknown }).details;
    return { code: e.code, exitCode: e.exitCode, message: e.message, ...(details === undefined ? {} : { details }) };
  }
  return { code: "internal", exitCode: ExitCode.internal, message: e instanceof Error ? e.message : String(e) };
}

/** The stack has no directory under `stacks/`. */
export class UnknownStackError extends StackpinError {
  readonly exitCode = ExitCode.unknownStack;
  readonly code = "unknown-stack";
  constructor(readonly stackName: string, readonly known: string[]) {
    super(
      `stack "${stackName}" not found; known: ${known.length ? known.join(", ") : "(none)"}. ` +
        `To add it, create stacks/${stackName}/stack.yaml and a version file beside it (docs/concepts.md: "Stacks and versions").`,
    );
  }
}

/** The stack is defined under `stacks/` but was never deployed to the backend. */
export class StackNotDeployedError extends StackpinError {
  readonly exitCode = ExitCode.unknownStack;
  readonly code = "stack-not-deployed";
  constructor(readonly stackName: string, readonly backendUrl: string) {
    super(
      `stack ${stackName} has never been deployed to ${backendUrl}: nothing to roll back or show. ` +
        `Deploy a version first: \`stackpin deploy --stack ${stackName} --version <v>\`.`,
    );
  }
}

/** The version asked for has no file, or a symbolic version (`previous`) cannot be resolved. */
export class UnknownVersionError extends StackpinError {
  readonly exitCode = ExitCode.unknownVersion;
  readonly code = "unknown-version";
  constructor(readonly stackName: string, readonly version: string, readonly known: string[], hint?: string) {
    super(
      hint ??
        `version ${version} not found for stack ${stackName}; known: ${known.length ? known.join(", ") : "(none)"}`,
    );
  }
}

/** A file under `stacks/` is not valid YAML or fails validation. Nothing was applied. */
export class InvalidVersionFileError extends StackpinError {
  readonly exitCode = ExitCode.invalidVersionFile;
  readonly code = "invalid-version-file";
  constructor(readonly file: string, readonly problems: string[]) {
    super(`${file} is invalid, nothing was changed:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

/**
 * The deploy machine's own policy file (see `lib/policy/machine-policy.ts`) is unreadable, not valid YAML, or
 * fails validation. Exit 5 like a bad stack file; nothing was changed.
 */
export class InvalidMachinePolicyError extends StackpinError {
  readonly exitCode = ExitCode.invalidVersionFile;
  readonly code = "invalid-machine-policy";
  constructor(readonly file: string, readonly problems: string[]) {
    super(
      `the machine policy ${file} is invalid, nothing was changed (no stack command runs on this machine until it is fixed):\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
  }
}

/** The stack's secrets provider is `passphrase` but no passphrase was given. */
export class MissingPassphraseError extends StackpinError {
  readonly exitCode = ExitCode.missingPassphrase;
  readonly code = "missing-passphrase";
  constructor(readonly stackName: string) {
    super(
      `stack ${stackName} encrypts its secrets with a passphrase, and none was given: ` +
        `set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE. Nothing was changed.`,
    );
  }
}

/** The passphrase given does not decrypt the stack's secrets. */
export class WrongPassphraseError extends StackpinError {
  readonly exitCode = ExitCode.missingPassphrase;
  readonly code = "wrong-passphrase";
  constructor(readonly stackName: string) {
    super(`the passphrase given does not decrypt stack ${stackName}'s secrets (incorrect passphrase). Nothing was changed.`);
  }
}

/** The stack's KMS secrets provider could not be used: unreachable, no credentials, or access refused. */
export class SecretsProviderUnavailableError extends StackpinError {
  readonly exitCode = ExitCode.missingPassphrase;
  readonly code = "secrets-provider-unavailable";
  constructor(readonly stackName: string, readonly provider: string, readonly detail: string) {
    super(
      `stack ${stackName} encrypts its secrets with ${provider}, and Pulumi could not use it: ${detail}\n` +
        `Check that the KMS is reachable and your credentials may use the key` +
        `${provider.startsWith("hashivault://") ? " (VAULT_ADDR and VAULT_TOKEN)" : ""}. Nothing was changed.`,
    );
  }
}

/**
 * Another operation holds the stack: Pulumi's lock in the backend, or stackpin's in-flight mark, belongs
 * to a process that runs (or, on another host, cannot be proven gone). Nothing was changed.
 */
export class ConcurrentOperationError extends StackpinError {
  readonly exitCode = ExitCode.concurrentOperation;
  readonly code = "concurrent-operation";
  /** When the holder's lease ends (ISO 8601), when it keeps one: the stack cannot be taken over before. */
  readonly details?: { expiresAt: string };
  constructor(readonly stackName: string, options?: { cause?: unknown; holder?: string; hint?: string; expiresAt?: string }) {
    super(
      `another operation is running on stack ${stackName}${options?.holder ? ` (${options.holder})` : " (its lock is held in the backend)"}. ` +
        `Wait for it to finish. ${options?.hint ? `${options.hint[0].toUpperCase()}${options.hint.slice(1)}` : `If its process died, \`stackpin recover --stack ${stackName}\` clears what it left (the next deploy or rollback does too)`}. ` +
        `Nothing was changed.`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    if (options?.expiresAt) this.details = { expiresAt: options.expiresAt };
  }
}

/**
 * The stack's history moved between the plan and the apply (another operation applied first): the plan
 * was computed from a world that no longer exists, so it is not applied. Nothing was changed.
 */
export class StalePlanError extends StackpinError {
  readonly exitCode = ExitCode.concurrentOperation;
  readonly code = "stale-plan";
  constructor(
    readonly stackName: string,
    readonly arrow: string,
    readonly plannedRevision: number,
    readonly currentRevision: number,
  ) {
    super(
      `stack changed since the plan: ${arrow} was planned from revision ${plannedRevision}, the stack is at ${currentRevision} ` +
        `(another operation applied in between). Run \`stackpin history --stack ${stackName}\` and plan again. Nothing was changed.`,
    );
  }
}

/** What a failed update's error carries besides its detail. */
export interface ApplyFailureOptions {
  cause?: unknown;
  /** The failed update's revision, when the engine recorded it. */
  revision?: number;
  /** What the failed update left behind that the next command must know (the database schema moved), one sentence each. */
  left?: string[];
  /** What the program found about the failure and what to do (why a claim never bound), one sentence each, after the engine's error. */
  hints?: string[];
}

/** The engine ran and the update failed; the stack may be partially updated. */
export class ApplyFailedError extends StackpinError {
  // Widened so that a failure during the update can carry the code of what failed (a health gate: 11).
  readonly exitCode: ExitCodeValue = ExitCode.applyFailed;
  readonly code: string = "apply-failed";
  /** What the program found about the failure and what to do, as the message says it after `detail` (see {@link ApplyFailureOptions.hints}). */
  readonly hints: string[];
  constructor(
    readonly stackName: string,
    readonly version: string,
    readonly detail: string,
    options?: ApplyFailureOptions & { what?: string },
  ) {
    super(
      `${options?.what ?? `applying ${version} to stack ${stackName} failed`} during the update` +
        `${options?.revision ? ` (revision ${options.revision}, recorded in history as failed)` : ""}; ` +
        `the stack may be partially updated. Run \`stackpin status --stack ${stackName}\`, then re-apply or roll back.\n${detail}` +
        (options?.hints?.length ? `\n${options.hints.join("\n")}` : "") +
        (options?.left?.length ? `\n${options.left.join("\n")}` : ""),
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.hints = options?.hints ?? [];
  }
}

/**
 * A database change failed inside the update (found at create time, after the preview's checks passed):
 * unlike a refusal before the apply (exit 13), the update ran, failed and is in history.
 */
export class DatabaseApplyFailedError extends ApplyFailedError {
  override readonly code = "database-apply-failed";
  constructor(stackName: string, version: string, readonly databaseCause: string, options?: ApplyFailureOptions) {
    super(stackName, version, `the database change failed: ${databaseCause}`, { ...options, what: `applying ${version} to stack ${stackName} failed in its database change` });
  }
}

/**
 * The new release failed the health gate inside the update: the traffic switch never moved to it, so
 * the release was not taken into service. Exit 11 like a failed verification (the README's contract).
 */
export class HealthGateFailedError extends ApplyFailedError {
  override readonly exitCode = ExitCode.verificationFailed;
  override readonly code = "health-gate-failed";
  constructor(stackName: string, version: string, readonly reason: string, options?: ApplyFailureOptions) {
    super(stackName, version, `health gate: ${reason}`, {
      ...options,
      what: `${version} failed its health gate on stack ${stackName}: traffic stayed on the previous release${options?.left?.length ? " (its database change did not: see below)" : ""}, and the update failed`,
    });
  }
}

/**
 * The new release never became ready inside the update, by the program's own readiness gate (a Kubernetes
 * Deployment whose rollout stopped progressing): traffic never moved to it. Exit 8 like any failed update
 * (a release that fails the local program's health gate is a {@link HealthGateFailedError}, exit 11).
 */
export class NeverReadyError extends ApplyFailedError {
  constructor(stackName: string, version: string, readonly reason: string, options?: ApplyFailureOptions) {
    super(stackName, version, reason, {
      ...options,
      what: `${version} never became ready on stack ${stackName}: traffic stayed on the previous release${options?.left?.length ? " (its database change did not: see below)" : ""}, and the update failed`,
    });
  }
}

/**
 * The engine failed outside an update stackpin ran: a preview, or reading or refreshing the stack.
 * `during` says what it was doing (a preview: "the preview; nothing was applied").
 */
export class EngineFailedError extends StackpinError {
  readonly exitCode = ExitCode.applyFailed;
  readonly code = "engine-failed";
  /** `detail` is the CLI's whole report (kept for classification); the message shows its error lines. */
  constructor(readonly stackName: string, readonly detail: string, options?: { cause?: unknown; during?: string; hint?: string }) {
    super(
      `the Pulumi engine failed on stack ${stackName}${options?.during ? ` in ${options.during}` : ""}:\n${engineErrorLines(detail)}${options?.hint ? `\n${options.hint}` : ""}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
  }
}

/** A provider's count of the errors it lists next (`1 error occurred:`), with or without `error: ` before it. */
const errorCount = /^(error: )?\d+ errors? occurred:$/;

/**
 * The engine's own error lines from a CLI report, without the CLI's boilerplate and progress lines. A
 * provider's "N errors occurred:" is never kept alone: the errors listed under it are the message.
 */
export function engineErrorLines(message: string): string {
  const lines = message.split("\n").map((l) => l.trim());
  const errors: string[] = [];
  lines.forEach((l, i) => {
    if (!l.startsWith("error: ") || l === "error: update failed" || l === "error: preview failed") return;
    // The errors listed under a count are "* …" lines; a count with none listed says nothing.
    if (errorCount.test(l)) {
      const items: string[] = [];
      for (let j = i + 1; j < lines.length && lines[j].startsWith("* "); j++) items.push(lines[j].slice(2));
      if (items.length) errors.push(items.join("\n"));
      return;
    }
    errors.push(l.slice("error: ".length));
  });
  // An update held to a saved plan that stops at an error also reports every planned step it never reached;
  // the error that stopped it is the news.
  const unreached = (e: string) => /^expected resource operations for \S+ but none were seen$/.test(e);
  const shown = errors.some((e) => !unreached(e)) ? errors.filter((e) => !unreached(e)) : errors;
  const tail = message.trim().split("\n").map((l) => l.trim()).filter((l) => l && !errorCount.test(l)).slice(-3);
  return [...new Set(shown)].slice(0, 4).join("\n") || tail.join("\n");
}

/**
 * An engine diagnostic's text for a progress line: a provider's "N errors occurred:" gives way to the
 * errors listed under it, one a line, so no line is ever the count alone; undefined when nothing is left.
 */
export function diagnosticText(message: string): string | undefined {
  const lines = message.split("\n").map((l) => l.trim()).filter((l) => l && !errorCount.test(l));
  return lines.map((l) => l.replace(/^\* /, "")).join("\n") || undefined;
}

/**
 * Where a release failed: its `verification` after the apply, its `readiness` inside the update (a health
 * gate, a rollout that never got ready: it never took traffic), or the `update` itself.
 */
export type ApplyFailureStage = "verification" | "readiness" | "update";

/** What happened to `version` (on `stack`, when given) at each {@link ApplyFailureStage}, as a message's opening words. */
export function failedAt(stage: ApplyFailureStage, version: string, stack?: string): string {
  const on = stack === undefined ? "" : ` on stack ${stack}`;
  if (stage === "readiness") return `${version} never became ready${on} (inside the update: it never took traffic)`;
  if (stage === "update") return `${version} failed inside the update${on}`;
  return `${version} failed verification${on}`;
}

/** A rollback that requires confirmation was neither confirmed nor run with `--yes`. */
export class NotConfirmedError extends StackpinError {
  readonly exitCode = ExitCode.notConfirmed;
  readonly code = "not-confirmed";
  constructor(readonly stackName: string, readonly version: string) {
    super(`not confirmed: ${version} was not applied to stack ${stackName}. Re-run with --yes to apply without asking.`);
  }
}

/** No usable Pulumi CLI could be found or built. */
export class PulumiUnavailableError extends StackpinError {
  readonly exitCode = ExitCode.pulumiUnavailable;
  readonly code = "pulumi-unavailable";
  constructor(detail: string) {
    super(`no usable Pulumi CLI: ${detail}\nRun \`npm run setup\` to build one from Pulumi's Go modules.`);
  }
}

/**
 * The version was applied but failed verification, or its update failed (its health gate, a release that
 * never became ready, or anything else the engine met) and `--auto-rollback` went back. `situation.failed`
 * says which the message tells: `verification` (after the apply, the default), `readiness` (inside the
 * update: it never took traffic) or `update`. `rolledBackTo` says where an automatic rollback took the
 * stack, if one ran; `rollbackFailure` why that rollback failed.
 */
export class VerificationFailedError extends StackpinError {
  readonly exitCode = ExitCode.verificationFailed;
  readonly code = "verification-failed";
  constructor(
    readonly stackName: string,
    readonly version: string,
    readonly reason: string,
    readonly rolledBackTo?: string,
    /** The results of the failed apply and of the rollback, for `--json`. */
    readonly details?: unknown,
    /** How the version got there and what the stack is left with, which the message states. */
    readonly situation: { op?: "deploy" | "rollback"; failed?: ApplyFailureStage; rollbackFailure?: string; rollbackTarget?: string } = {},
  ) {
    super(`${failedAt(situation.failed ?? "verification", version, stackName)}: ${reason}\n${VerificationFailedError.outcome(stackName, version, rolledBackTo, situation)}`);
  }

  private static outcome(stack: string, version: string, rolledBackTo: string | undefined, s: VerificationFailedError["situation"]): string {
    if (rolledBackTo) return `rolled back automatically to ${rolledBackTo}, the last version that verified.`;
    if (s.rollbackFailure) {
      return `the automatic rollback to ${s.rollbackTarget ?? "the last version that verified"} failed too: ${s.rollbackFailure}\n` +
        `Run \`stackpin status --stack ${stack}\` to see what is live, then roll back by hand.`;
    }
    if (s.op === "rollback") {
      return `the rollback to ${version} was applied and is live, but unverified; ` +
        `check it, then roll back to another version or deploy a fix (\`stackpin status --stack ${stack}\`).`;
    }
    return `the stack was not rolled back; run \`stackpin rollback --stack ${stack} --to previous\` or deploy with --auto-rollback.`;
  }
}

/** The operation needs an explicit approval that was not given. Nothing was changed. */
export class ApprovalRequiredError extends StackpinError {
  readonly exitCode = ExitCode.approvalRequired;
  readonly code = "approval-required";
  constructor(readonly stackName: string, readonly what: string, readonly flag: string) {
    super(`${what} on stack ${stackName} needs explicit approval: re-run with ${flag}. Nothing was changed.`);
  }
}

/**
 * What the plan does loses data (a point-in-time restore, a removal, a destroy of what holds data) and
 * `--approve-data-loss` was not given. Nothing was changed.
 */
export class DataLossApprovalRequiredError extends ApprovalRequiredError {
  constructor(stackName: string, what: string) {
    super(stackName, what, "--approve-data-loss");
  }
}

/**
 * A deploy failed (its health gate, its update or its verification) and its automatic rollback was not
 * run, because going back loses data (a point-in-time restore, or deleting what holds data) and
 * `--approve-data-loss` was not given.
 * The message keeps the deploy's own failure, with what it did to the database, and names the rollback to
 * run. The stack is as the failed deploy left it, which did change it: never "nothing was changed".
 */
export class AutoRollbackNeedsApprovalError extends StackpinError {
  readonly exitCode = ExitCode.approvalRequired;
  readonly code = "auto-rollback-needs-approval";
  constructor(
    readonly stackName: string,
    readonly version: string,
    /** The failed deploy's message, as it reads without `--auto-rollback`. */
    readonly failure: string,
    readonly rollbackTarget: string,
    /** What the rollback's plan does that needs the approval. */
    readonly needs: string,
    /** The failed apply's result, when it completed, and the rollback's refusal, for `--json`. */
    readonly details?: unknown,
  ) {
    super(
      `${failure}\n` +
        `the automatic rollback to ${rollbackTarget} was not run: ${needs}, and --approve-data-loss was not given. ` +
        `The stack is as the failed deploy of ${version} left it.\n` +
        `To go back, check the plan with \`stackpin preview --stack ${stackName} --to ${rollbackTarget}\`, ` +
        `then run \`stackpin rollback --stack ${stackName} --to ${rollbackTarget} --approve-data-loss\`.`,
    );
  }
}

/** A restore cannot be done: no snapshot, a time outside the recoverable window, or WAL missing. */
export class RestoreImpossibleError extends StackpinError {
  readonly exitCode = ExitCode.databaseUnavailable;
  readonly code = "restore-impossible";
  constructor(readonly stackName: string, readonly detail: string) {
    super(`cannot restore the database of stack ${stackName}: ${detail}. Nothing was changed.`);
  }
}

/** The database could not be reached or refused the change. */
export class DatabaseUnavailableError extends StackpinError {
  readonly exitCode = ExitCode.databaseUnavailable;
  readonly code = "database-unavailable";
  constructor(readonly stackName: string, readonly detail: string) {
    super(`the database of stack ${stackName} is not usable: ${detail}. Nothing was changed.`);
  }
}

/** Deploys are frozen on the stack (rollbacks are not). Nothing was changed. */
export class FrozenError extends StackpinError {
  readonly exitCode = ExitCode.frozen;
  readonly code = "frozen";
  constructor(readonly stackName: string, readonly reason: string, readonly by: string, readonly at: string, readonly refused = "deploys to") {
    super(
      `${refused} stack ${stackName} are frozen since ${at} by ${by}: ${reason}. Rollbacks are still allowed; ` +
        `lift it with \`stackpin unfreeze --stack ${stackName} --reason ...\`. Nothing was changed.`,
    );
  }
}

/**
 * `watch` saw a trigger fire and did not roll back: it was not asked to (no --auto-rollback), or a guard
 * of the stack's policy withheld the automatic rollback (`details.withheld` says which and why, and
 * `details.incident` names the incident record that keeps it). Nothing was changed.
 */
export class TriggerFiredError extends StackpinError {
  readonly exitCode = ExitCode.triggerFired;
  readonly code = "trigger-fired";
  constructor(
    readonly stackName: string,
    readonly rule: string,
    readonly detail: string,
    readonly wouldRollBackTo?: string,
    /** When the breach began and when the rule fired; why a guard withheld the rollback (in `--json` output as `error.details`). */
    readonly details?: { breachedAt: string; firedAt: string; withheld?: { guard: string; reason: string }; incident?: string },
  ) {
    const withheld = details?.withheld;
    super(
      `trigger "${rule}" fired on stack ${stackName}: ${detail}. ` +
        (withheld
          ? `The automatic rollback${wouldRollBackTo ? ` to ${wouldRollBackTo}` : ""} was not run: ${withheld.reason}. ` +
            (details?.incident ? `The incident record says so: \`stackpin incident show --stack ${stackName} --id ${details.incident}\`. ` : "") +
            (wouldRollBackTo ? `If going back is still right, run \`stackpin rollback --stack ${stackName} --to ${wouldRollBackTo}\`. ` : "") +
            "Nothing was changed."
          : wouldRollBackTo
            ? `Roll back with \`stackpin rollback --stack ${stackName} --to ${wouldRollBackTo}\`, or watch with --auto-rollback.`
            : "No verified version to roll back to."),
    );
  }
}

/** The audit trail does not verify: an entry was edited, removed or reordered. */
export class AuditBrokenError extends StackpinError {
  readonly exitCode = ExitCode.auditBroken;
  readonly code = "audit-broken";
  constructor(readonly stackName: string, readonly file: string, readonly problems: string[]) {
    super(`the audit trail of stack ${stackName} (${file}) does not verify:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

/** `snapshot rm` named something the stack cannot remove: unknown, or the live database. Nothing was changed. */
export class BackupNotRemovableError extends StackpinError {
  readonly exitCode = ExitCode.usage;
  readonly code = "backup-not-removable";
  constructor(readonly stackName: string, readonly backup: string, readonly why: string) {
    super(`cannot remove ${backup} from stack ${stackName}: ${why}. Nothing was changed.`);
  }
}

/** `stackpin approve` could not write an approval that would verify: no allowed signers, a key not in them, or signing failed. */
export class CannotApproveError extends StackpinError {
  readonly exitCode = ExitCode.approvalRequired;
  readonly code = "cannot-approve";
  constructor(readonly stackName: string, readonly reason: string) {
    super(`cannot approve on stack ${stackName}: ${reason}. No approval was written.`);
  }
}

/** The plan a rollback would apply is not the one its caller previewed (`--expect-plan`, used by fleet rollbacks). */
export class PlanChangedError extends StackpinError {
  readonly exitCode = ExitCode.concurrentOperation;
  readonly code = "plan-changed";
  constructor(readonly stackName: string, readonly expected: string, readonly actual: string) {
    super(
      `stack ${stackName} changed since the plan was previewed: the plan now is ${actual}, the preview was ${expected} ` +
        `(another operation applied, or a version file changed). Preview again. Nothing was changed.`,
    );
  }
}

/** `stack.yaml` names a program by path that cannot be used: no such module, no default export, or it fails to load. Nothing was changed. */
export class ProgramLoadError extends StackpinError {
  readonly exitCode = ExitCode.invalidVersionFile;
  readonly code = "program-load";
  constructor(readonly program: string, readonly reason: string) {
    super(`program ${program} (stack.yaml's program) cannot be used: ${reason}. Nothing was changed.`);
  }
}

/** `adopt`: the stack's config has something a version file cannot hold (or its program refuses). Nothing was written. */
export class InexpressibleConfigError extends StackpinError {
  readonly exitCode = ExitCode.invalidVersionFile;
  readonly code = "inexpressible-config";
  constructor(readonly stackName: string, readonly problems: string[]) {
    super(`cannot adopt stack ${stackName}: its config cannot be expressed as stackpin files, nothing was written:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

/** `adopt`: the stack's checkpoint holds operations an update started and never finished (running now, or interrupted). Nothing was written. */
export class PendingOperationsError extends StackpinError {
  readonly exitCode = ExitCode.concurrentOperation;
  readonly code = "pending-operations";
  constructor(readonly stackName: string, readonly pending: string[]) {
    super(
      `cannot adopt stack ${stackName}: an update is running or was interrupted (${pending.length} pending operation(s): ${pending.slice(0, 5).join(", ")}). ` +
        `Let it finish, or clear it with Pulumi (\`pulumi refresh --clear-pending-creates\`), then adopt again. Nothing was written.`,
    );
  }
}

/** A fleet rollback where not every stack succeeded; `details` holds every stack's result. */
export class FleetIncompleteError extends StackpinError {
  readonly exitCode = ExitCode.fleetIncomplete;
  readonly code = "fleet-incomplete";
  constructor(message: string, readonly details: unknown) {
    super(message);
  }
}

/** `check`: at least one way back asked about cannot be taken now; `details` holds the whole report. */
export class NotReadyError extends StackpinError {
  readonly exitCode = ExitCode.notReady;
  readonly code = "not-ready";
  constructor(message: string, readonly details: unknown) {
    super(message);
  }
}

/** `adopt` onto a stack already defined under `stacks/`: stackpin never overwrites its files. Nothing was written. */
export class StackAlreadyDefinedError extends StackpinError {
  readonly exitCode = ExitCode.usage;
  readonly code = "stack-already-defined";
  constructor(readonly stackName: string, readonly file: string) {
    super(`stack ${stackName} is already defined (${file}): adopt writes a new stack's files and never overwrites them. Nothing was written.`);
  }
}

/** `incident show` named an incident the stack has no record of. Nothing was changed. */
export class UnknownIncidentError extends StackpinError {
  readonly exitCode = ExitCode.usage;
  readonly code = "unknown-incident";
  constructor(readonly stackName: string, readonly id: string, readonly known: string[]) {
    super(
      `no incident "${id}" for stack ${stackName}; known: ${known.length ? known.join(", ") : "(none: every rollback writes one)"}. ` +
        `Records are in .stackpin/incidents/${stackName}/.`,
    );
  }
}

/**
 * The backend's storage cannot keep stackpin's shared records safely: an `s3://` store that ignores (or
 * does not support) S3 conditional writes, so two machines writing at once would both "win" and one write
 * would be lost without a trace. Found before anything was written to the records or the audit trail.
 */
export class BackendUnsupportedError extends StackpinError {
  readonly exitCode = ExitCode.backendUnsupported;
  readonly code = "backend-unsupported";
  constructor(
    /** The store, as `s3://bucket/prefix at <endpoint>`. */
    readonly store: string,
    /** What it lacks: `ignores conditional writes (If-Match)`. */
    readonly lacks: string,
    /** What the check saw it do: `it replaced an object whose ETag did not match`. */
    readonly found: string,
  ) {
    super(
      `${store} ${lacks}: stackpin cannot share records safely there. ${found[0].toUpperCase()}${found.slice(1)}, so two writers at once would both succeed and one write would be lost. ` +
        `Nothing was written. Use a store that supports S3 conditional writes (AWS S3, MinIO, versitygw…); see docs/shared-backends.md.`,
    );
  }
}
