/**
 * stackpin as a library: version-pinned Pulumi stacks with deploy, preview, rollback, history and status.
 *
 * ```ts
 * import { Environment } from "stackpin";
 * const prod = await Environment.open({ stack: "prod", passphrase: { value: process.env.PULUMI_CONFIG_PASSPHRASE } });
 * const plan = await prod.previewRollback({ to: "v41" });
 * if (plan.warnings.length === 0) await prod.rollback({ to: "v41", reason: "error rate 7% after v42" });
 * ```
 */
import { builtinPrograms } from "../programs";
import type { EnvironmentContext, OpenEnvironmentOptions } from "./environment";
import { openEnvironment as openEnvironmentWith } from "./environment";
import { adopt as adoptWith, type AdoptOptions, type AdoptResult } from "./operations/adopt";
import { deploy, DeployOptions } from "./operations/deploy";
import { history } from "./operations/history";
import { preview, PreviewOptions } from "./operations/preview";
import { previewRollback, rollback, RollbackOptions } from "./operations/rollback";
import { setSecret, SetSecretOptions } from "./operations/secret";
import { status } from "./operations/status";
import { destroy, DestroyOptions } from "./operations/destroy";
import { rotate, RotateOptions } from "./operations/rotate";
import { restore, RestoreOptions } from "./operations/restore";
import { approve, ApproveOptions } from "./operations/approve";
import { watch, WatchOptions } from "./operations/watch";
import { freeze, unfreeze, FreezeOptions } from "./operations/freeze";
import { readAudit, verifyAudit } from "./operations/audit";
import { check, CheckOptions } from "./operations/check";

export * from "./errors";
export type { OpenEnvironmentOptions, ProgressEvent, ProgressOptions, EnvironmentContext } from "./environment";
export type { ApplyResult } from "./operations/apply";
export type { Plan } from "./operations/plan";
export { planIsEmpty } from "./operations/plan";
export type { Status } from "./operations/status";
export type { DeployOptions, PreviewOptions, RollbackOptions, SetSecretOptions, DestroyOptions, RotateOptions, RestoreOptions };
export type { DatabasePlan, DatabaseDecision } from "./planning/database";
export type { RotateResult } from "./operations/rotate";
export type { DestroyResult } from "./operations/destroy";
export type { DataFate, DataKind, DataResource } from "./planning/data-resources";
export type { VerificationResult, CheckResult } from "./verify/verification";
export type { RolloutLayout, RolloutMove, Slot } from "./planning/rollout";
export type { HistoryEntry, ApplyRecord } from "./records/history-record";
export type { ConfigChange } from "./versions/config-diff";
export type { ResourceStep, StackOutput } from "./engine/stack";
export type { VersionFile, StackFile } from "./versions/schema";
export { ensurePulumi, locatePulumi } from "./engine/pulumi-cli";
export type { PulumiCli, PulumiSource } from "./engine/pulumi-cli";
export { deploy, preview, previewRollback, rollback, history, status, setSecret, destroy, rotate, restore };
export { approve };
export type { ApproveOptions };
export type { ApproveResult } from "./operations/approve";
export type { ApprovalInput, ApprovalPolicy, ApprovalRequirement, ApprovalStatement, GrantedApproval, PolicySource } from "./policy/approvals";
export { approvalPolicyOf, mergeApprovalPolicies } from "./policy/approvals";
export { checkMachinePolicy, readMachinePolicy } from "./policy/machine-policy";
export type { MachinePolicy, MachinePolicyInput, ReadMachinePolicyOptions } from "./policy/machine-policy";
export { planDigest } from "./policy/plan-digest";
export { fleetRollback, processRunner } from "./operations/fleet";
export { emitK8sJobs } from "./operations/fleet-emit";
export type { EmitK8sJobsOptions, JobBatch } from "./operations/fleet-emit";
export type { FleetRollbackOptions, FleetResult, FleetPreview, FleetStackResult, FleetWave } from "./operations/fleet";
export type { StackRunner, StackRunWatch, StackPreviewRequest, StackRollbackRequest, PreviewOutcome, RollbackOutcome, ProcessRunnerOptions } from "./operations/fleet";
export type { PlanDigestInput } from "./policy/plan-digest";
export { recover } from "./operations/recover";
export type { AdoptOptions, AdoptResult };
export type { RecoverOptions, RecoveryReport, InterruptedOperation } from "./operations/recover";
// The types the results and options above are made of, so that the API reference documents every one.
export type { PlanEngine } from "./environment";
export type { StackDefinition } from "./versions/store";
export type { UsedApproval, RecordedConfig } from "./records/history-record";
export type { MigrationStep, SnapshotRecord, RestoreRecord } from "./planning/database";
export type { FleetSelection } from "./operations/fleet";
export type { Generations } from "./planning/secret-generations";
export type { IncidentRecord, SignalRecovery } from "./incident/incident";
export type { IncidentMark, IncidentSeries } from "./incident/incident-page";
export type { SlotRelease } from "./planning/rollout";
export type { Freeze } from "./records/ledger";
export type { Evaluation } from "./incident/triggers";
export type { RollbackResult } from "./operations/rollback";
export type { TrafficMoved } from "./operations/switch-first";
export type { EnsurePulumiOptions, LocatePulumiOptions } from "./engine/pulumi-cli";
export type { ApplyWatch, ApplyWatcher, ApplyWatchRequest, ProgramFactory, ProgramContext, ProgramConfigSpec, ProgramReconciler, FailureExplainer, ReadinessCheck, ReadinessExplainer, ReadinessFinding, ReadinessRequest, StateResourceView, SwitchOutcome, SwitchRequest, TrafficSwitch } from "../programs/types";
export type { RuleEvaluation } from "./incident/triggers";
export type { NotificationResult } from "./incident/notify";
export type { TimelineEntry } from "./incident/incident";

/**
 * Validates the stack's definition and the passphrase, finds the CLI, and returns the context operations
 * run in. Nothing touches the backend here: a bad stack, stack file or missing passphrase fails first.
 * A stack names one of `options.programs`, by default the built-in ones (`local`, `aws`, `kubernetes`).
 */
export function openEnvironment(options: OpenEnvironmentOptions): Promise<EnvironmentContext> {
  return openEnvironmentWith({ ...options, programs: options.programs ?? builtinPrograms });
}

/**
 * Turns an existing Pulumi stack into a stackpin stack (writes `stacks/<stack>/` from the config its newest
 * update ran with; reads the backend only). `options.programs` defaults to the built-in ones.
 */
export function adopt(options: AdoptOptions): Promise<AdoptResult> {
  return adoptWith({ ...options, programs: options.programs ?? builtinPrograms });
}

/**
 * One environment (a stack pinned to versions under `stacks/`), with each operation as a method.
 * Every method is also exported as a function taking the {@link EnvironmentContext}.
 */
export class Environment {
  private constructor(
    /** The validated context every operation runs in. */
    readonly context: EnvironmentContext,
  ) {}

  /** Validates the stack, its files and the passphrase, and finds the Pulumi CLI. Touches no state. */
  static async open(options: OpenEnvironmentOptions): Promise<Environment> {
    return new Environment(await openEnvironment(options));
  }

  /** See {@link deploy}. */
  deploy(options: DeployOptions) {
    return deploy(this.context, options);
  }
  /** See {@link preview}. */
  preview(options: PreviewOptions) {
    return preview(this.context, options);
  }
  /** See {@link previewRollback}. */
  previewRollback(options: Omit<RollbackOptions, "confirm" | "reason">) {
    return previewRollback(this.context, options);
  }
  /** See {@link rollback}. */
  rollback(options: RollbackOptions) {
    return rollback(this.context, options);
  }
  /** See {@link history}. */
  history() {
    return history(this.context);
  }
  /** See {@link status}. */
  status() {
    return status(this.context);
  }
  /** See {@link destroy}. */
  destroy(options: DestroyOptions) {
    return destroy(this.context, options);
  }
  /** See {@link restore}. */
  restore(options: RestoreOptions) {
    return restore(this.context, options);
  }
  /** See {@link approve}. */
  approve(options: ApproveOptions) {
    return approve(this.context, options);
  }
  /** See {@link rotate}. */
  rotate(options: RotateOptions) {
    return rotate(this.context, options);
  }
  /** See {@link setSecret}. */
  setSecret(options: SetSecretOptions) {
    return setSecret(this.context, options);
  }
  /** See {@link watch}. */
  watch(options: WatchOptions) {
    return watch(this.context, options);
  }
  /** See {@link check}. */
  check(options: CheckOptions = {}) {
    return check(this.context, options);
  }
  /** See {@link freeze}. */
  freeze(options: FreezeOptions) {
    return freeze(this.context, options);
  }
  /** See {@link unfreeze}. */
  unfreeze(options: FreezeOptions) {
    return unfreeze(this.context, options);
  }
  /** See {@link verifyAudit}. */
  verifyAudit() {
    return verifyAudit(this.context);
  }
  /** See {@link readAudit}. */
  readAudit() {
    return readAudit(this.context);
  }
}
export { removeSnapshot } from "./operations/snapshot";
export { watch, freeze, unfreeze, verifyAudit, readAudit };
export type { WatchOptions, WatchResult } from "./operations/watch";
export { check };
export type { CheckOptions };
export type { Candidate, Leg, LegName, ReadinessChange, ReadinessReport, TargetReadiness } from "./planning/readiness";
export type { SeenReadinessChange } from "./operations/readiness-watch";
export type { FreezeOptions };
export type { AuditEntry, AuditVerification } from "./records/audit";
export type { RemoveSnapshotOptions } from "./operations/snapshot";
export { showIncident } from "./operations/incident";
export type { IncidentShowOptions, IncidentShowResult } from "./operations/incident";
