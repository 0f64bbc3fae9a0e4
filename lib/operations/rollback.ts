import { ApprovalInput, approvedBy, recordOf } from "../policy/approvals";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { PlanChangedError, StackpinError, VerificationFailedError } from "../errors";
import type { StackOutput } from "../engine/stack";
import type { StackReader } from "../engine/stack-reader";
import { readBackendLocks } from "../engine/interruption";
import type { HistoryEntry } from "../records/history-record";
import type { StackRecords } from "../records/ledger";
import { IncidentRecord, IncidentRecorder } from "../incident/incident";
import { notify, NotificationResult, RollbackEvent } from "../incident/notify";
import { audit, auditFailure, incidentsDir } from "../records/trail";
import { diffConfig } from "../versions/config-diff";
import { ApplyResult, applyWith, planWith, readHistory, readHistoryAndTags } from "./apply";
import { guardPlan } from "./guard";
import { planRollback, RollbackPlan, skipOf } from "./rollback-plan";
import type { Plan } from "./plan";
import { recoverInterrupted, RecoveryReport } from "./recover";
import { fileDiffersWarning, readRanSecrets, resolveRollbackTarget, validateTargetEarly } from "./resolve";
import { moveTrafficFirst, TrafficMoved } from "./switch-first";

/** Options for {@link rollback}. */
export interface RollbackOptions extends ProgressOptions {
  /** The version to go back to: `v41`, `41`, or `previous` (the one before the live version). */
  to: string;
  /** Why, recorded in history ("error rate 7% after v42"). */
  reason?: string;
  /**
   * Called with the plan before anything changes; return false to stop (raises {@link NotConfirmedError}).
   * A rollback without it applies straight away, as `--yes` does.
   */
  confirm?: (plan: Plan) => Promise<boolean>;
  /** Approves the data loss of a point-in-time restore, when the database policy needs one. */
  approveDataLoss?: boolean;
  /** Approvals the stack's policy may require (`--approve NAME`, `--approval-file`). */
  approvals?: ApprovalInput;
  /** The trigger that started this rollback, when `watch` did. */
  trigger?: IncidentRecord["trigger"];
  /**
   * Re-apply even when the target is already live and verified (after drift, say). Without it such a
   * rollback is answered without an update, and recorded nowhere.
   */
  force?: boolean;
}

/**
 * A {@link RollbackOptions.confirm} for a caller holding a previewed plan (a fleet, `--expect-plan`): it
 * applies that plan or nothing. Any other plan raises {@link PlanChangedError} before anything changes.
 */
export function expectPlan(stackName: string, digest: string): (plan: Plan) => Promise<boolean> {
  return async (plan) => {
    if (plan.planDigest !== digest) throw new PlanChangedError(stackName, digest, plan.planDigest);
    return true;
  };
}

/** A rollback's outcome: the apply, and what was recorded and told around it. */
export interface RollbackResult extends ApplyResult {
  plan?: Plan;
  approvals: string[];
  notifications: NotificationResult[];
  /** The incident record, as JSON and as the start of a post-mortem; absent when the rollback was skipped. */
  incident?: { json: string; markdown: string };
  /** Set when nothing was applied because the target is already live and verified: the sentence that says so. */
  skipped?: string;
  /** From the breach to the start of the rollback, when a trigger started it. */
  breachToRollbackMs?: number;
  /** What was cleaned up first, when an earlier operation had been interrupted. */
  recovery?: RecoveryReport;
  /** Set when traffic moved before the engine ran (a pure switch back to a warm slot): where and when. */
  traffic?: TrafficMoved;
  /** From the rollback's start to the engine's update having recorded it (the state written). */
  recordedMs?: number;
}

/**
 * Rolls back by re-applying an earlier version's config through the engine. The past is not rewritten:
 * the rollback is a new forward entry in history whose config equals the target version's, like a Helm
 * revision. Around it: approvals the policy requires, webhooks when it starts and ends, an incident
 * record, and an audit entry. Raises {@link VerificationFailedError} when the version it went back to
 * fails verification.
 */
export async function rollback(ctx: EnvironmentContext, options: RollbackOptions): Promise<RollbackResult> {
  const startedAt = Date.now();
  options.onProgress?.({ type: "phase", phase: "validate", message: `resolving ${options.to} for ${ctx.stack.name}` });
  validateTargetEarly(ctx, options.to);
  const incident = new IncidentRecorder({ stack: ctx.stack.name, to: options.to, actor: ctx.actor, reason: options.reason, trigger: options.trigger });
  if (options.trigger) {
    incident.record.breachToRollbackMs = Date.parse(incident.record.startedAt) - Date.parse(options.trigger.breachedAt);
    incident.record.timeline.push(
      { at: options.trigger.breachedAt, step: "threshold breached", detail: `${options.trigger.rule}: ${options.trigger.detail}` },
      { at: options.trigger.firedAt, step: "trigger fired" },
    );
  }
  incident.step("rollback requested", options.reason);
  const webhooks = ctx.stack.settings.policy.notify;
  const tell = async (event: RollbackEvent["event"], result?: string) => {
    if (!webhooks?.webhooks.length) return;
    const r = incident.record;
    const sent = await notify(
      webhooks.webhooks,
      { event, stack: r.stack, from: r.from, to: r.to, reason: r.reason, trigger: r.trigger ? `${r.trigger.rule}: ${r.trigger.detail}` : undefined, result, at: new Date().toISOString() },
      webhooks.timeoutMs,
    );
    incident.record.notifications.push(...sent);
    for (const n of sent.filter((x) => !x.ok)) {
      options.onProgress?.({ type: "diagnostic", severity: "warning", message: `webhook ${n.url} (${n.event}) failed: ${n.error}; the rollback goes on` });
    }
  };

  // The world read once, through the CLI directly (no Automation API yet): enough to answer a rollback to
  // the version already live without loading the engine at all.
  const reader = await ctx.openReader();
  let seen: Awaited<ReturnType<typeof readOnce>>;
  let traffic: TrafficMoved | undefined;
  try {
    seen = await readOnce(ctx, reader);
    // No lock and no in-flight mark: nothing was interrupted, so the history read is the whole story.
    const quiet = seen && !seen.locks && !seen.records.inFlight ? seen : undefined;
    const skip = quiet ? attempt(() => skipOf(ctx, quiet.history, options, false)) : undefined;
    if (skip) {
      // The outputs the apply recorded when it is the newest update (it is, here); asked of the CLI otherwise.
      const recorded = seen!.records.live?.updateId === seen!.history[0]?.updateId ? seen!.records.live?.outputs : undefined;
      return skipped(ctx, skip, recorded ?? (await reader.outputs()), Date.parse(incident.record.startedAt));
    }
    // Traffic first, when nobody is asked anything and the rollback is a pure switch back to a warm slot.
    if (quiet && !options.confirm && !options.force) {
      traffic = await moveTrafficFirst(ctx, reader, quiet, options.to, startedAt, options).catch((err: Error) => {
        // A refusal (an unknown version, say) is the rollback's answer; anything else only costs the head start.
        if (err instanceof StackpinError) throw err;
        options.onProgress?.({ type: "diagnostic", severity: "warning", message: `traffic not moved first (${err.message.split("\n")[0]}): the engine goes first` });
        return undefined;
      });
      if (traffic) incident.step("traffic moved", `to the ${traffic.slot} slot (${traffic.version}) ${(traffic.movedMs / 1000).toFixed(2)} s after the rollback started: ${traffic.detail}`);
    }
  } finally {
    reader.close();
  }

  const engine = await ctx.openEngine({ create: false });
  let started = false;
  try {
    const recovery = await recoverInterrupted(ctx, engine, options);
    if (recovery.interrupted) {
      const i = recovery.interrupted;
      incident.step(`${i.op} interrupted`, `${i.what ?? `an ${i.op}`}${i.since ? `, started ${i.since},` : ""} was interrupted and never ended; ${recovery.summary}: ${recovery.actions.join("; ")}`);
    }
    // Read again only when recovery changed the stack; the stale-plan check before the update reads it anyway.
    const history = seen && !recovery.recovered ? seen.history : await readHistory(engine);
    // One plan value from one read of the world (the outputs come with the checkpoint read at open), then
    // one execution of exactly that plan.
    const outputs = await engine.outputs({ reuse: true });
    const { resources } = await engine.checkpoint({ reuse: true });
    await readRanSecrets(ctx, history, options.to);
    const decided = planRollback(ctx, { history, outputs, resources, interrupted: !!recovery.interrupted }, options);
    if (decided.kind === "skip") return skipped(ctx, decided, outputs, Date.parse(incident.record.startedAt));
    const { target, from, desired } = decided;
    Object.assign(incident.record, { from, to: target.version });
    incident.step("target resolved", `${from ?? "(nothing)"} -> ${target.version}`);

    const { granted, plan, held } = await guardPlan(ctx, engine, {
      ...options,
      op: "rollback",
      target,
      history,
      desired,
      dbOptions: { approveDataLoss: options.approveDataLoss },
      approvals: options.approvals ?? {},
      onPlan: (shown) => incident.diff(shown),
      what: target.version,
    });
    incident.record.approvals = granted.map((g) => g.summary);
    if (incident.record.approvals.length) incident.step("approved", incident.record.approvals.join("; "));
    if (plan) incident.step("plan confirmed");

    started = true;
    await tell("rollback.started");
    incident.step("apply started", desired.notes.join("; "));
    const result = await applyWith(ctx, engine, { op: "rollback", from, to: target.version, who: ctx.actor, reason: options.reason, approvals: recordOf(granted) }, target, history, desired, options, held);
    const recordedMs = Date.now() - startedAt;
    incident.record.revision = result.revision;
    incident.record.diff ??= {
      config: diffConfig(from ? safeConfig(ctx, from) : {}, target.config).map((c) => ({ key: c.key, kind: c.kind })),
      resources: result.resourceChanges.map((r) => ({ op: r.op, name: r.name })),
      warnings: desired.warnings,
    };
    incident.step("apply finished", `revision ${result.revision}`);
    incident.record.verification = result.verification;
    if (result.verification) incident.step(`verification ${result.verification.passed ? "passed" : "failed"}`, result.verification.reason);
    const ok = !result.verification || result.verification.passed;
    Object.assign(incident.record, { result: ok ? "succeeded" : `verification failed: ${result.verification?.reason}`, endedAt: new Date().toISOString() });
    await tell(ok ? "rollback.completed" : "rollback.failed", incident.record.result);
    const written = incident.write(incidentsDir(ctx));
    await audit(ctx, engine, { op: "rollback", from, to: target.version, result: ok ? "succeeded" : "failed", detail: `revision ${result.revision}; incident ${incident.record.id}${approvedBy(incident.record.approvals)}` }, options);
    if (!ok) {
      throw new VerificationFailedError(ctx.stack.name, target.version, result.verification?.reason ?? "verification failed", undefined, { rollback: result, incident: written }, { op: "rollback" });
    }
    return {
      ...result,
      plan,
      approvals: incident.record.approvals,
      notifications: incident.record.notifications,
      incident: written,
      breachToRollbackMs: incident.record.breachToRollbackMs,
      ...(recovery.recovered ? { recovery } : {}),
      ...(traffic ? { traffic, recordedMs } : {}),
    };
  } catch (err) {
    if (traffic) {
      // The truth about the world: traffic is on the slot it was moved to, whatever failed after.
      options.onProgress?.({
        type: "diagnostic",
        severity: "error",
        message: `traffic was already moved to the ${traffic.slot} slot (${traffic.version}) and stays there, but the engine did not record it: run \`stackpin rollback --stack ${ctx.stack.name} --to ${traffic.version}\` again to record it`,
      });
    }
    if (err instanceof VerificationFailedError) throw err;
    if (started) {
      const detail = (err as Error).message.split("\n")[0];
      Object.assign(incident.record, { result: `failed: ${detail}`, endedAt: new Date().toISOString() });
      incident.step("rollback failed", detail);
      await tell("rollback.failed", detail);
      incident.write(incidentsDir(ctx));
    }
    await auditFailure(ctx, engine, { op: "rollback", from: incident.record.from, to: incident.record.to }, err, options);
    throw err;
  } finally {
    engine.close();
  }
}

/** History and records as one CLI call reads them, with Pulumi's locks; undefined when that read fails (the engine path then says why). */
/** `fn`'s value, or undefined when it raises: a fast path that cannot decide leaves it to the full one. */
function attempt<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

async function readOnce(ctx: EnvironmentContext, reader: StackReader): Promise<{ history: HistoryEntry[]; records: StackRecords; locks: number } | undefined> {
  try {
    const { history, records } = await readHistoryAndTags(reader);
    return { history, records, locks: (await readBackendLocks(ctx.backendUrl, ctx.stack.project, ctx.stack.name, records.inFlight)).length };
  } catch {
    return undefined;
  }
}

/** A rollback's answer when its plan is to skip: nothing applied, nothing recorded. */
function skipped(ctx: EnvironmentContext, plan: Extract<RollbackPlan, { kind: "skip" }>, outputs: Record<string, StackOutput>, startedAt: number): RollbackResult {
  return {
    stack: ctx.stack.name,
    op: "rollback",
    from: plan.target.version,
    to: plan.target.version,
    revision: plan.revision,
    resourceChanges: [],
    changeSummary: {},
    outputs,
    durationMs: Date.now() - startedAt,
    approvals: [],
    notifications: [],
    skipped: plan.message,
  };
}

function safeConfig(ctx: EnvironmentContext, version: string) {
  try {
    return ctx.store.version(ctx.stack, version).config;
  } catch {
    return {};
  }
}

/** Previews a rollback: the same as {@link preview} with `op: "rollback"` and `previous` understood. */
export async function previewRollback(
  ctx: EnvironmentContext,
  options: Omit<RollbackOptions, "confirm" | "reason" | "approvals" | "trigger">,
): Promise<Plan> {
  validateTargetEarly(ctx, options.to);
  const engine = await ctx.openEngine({ create: false });
  try {
    const history = await readHistory(engine);
    await readRanSecrets(ctx, history, options.to);
    const ran = resolveRollbackTarget(ctx, options.to, history);
    return await planWith(ctx, engine, "rollback", ran.version, history, options, { approveDataLoss: options.approveDataLoss }, undefined, fileDiffersWarning(ran));
  } finally {
    engine.close();
  }
}
