import * as fs from "node:fs";
import type { ApprovalInput } from "../policy/approvals";
import type { EngineStack, InFlightMark } from "../engine/stack";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { ConcurrentOperationError, InvalidVersionFileError, StalePlanError, TriggerFiredError } from "../errors";
import { HistoryEntry, lastVerifiedVersion, liveState } from "../records/history-record";
import { IncidentRecord, IncidentRecorder, SignalRecovery, TimelineEntry, updateIncident } from "../incident/incident";
import { notify, RollbackEvent } from "../incident/notify";
import { baselineKey, baselineOf, recordStoreOf, StackRecords } from "../records/ledger";
import { incidentsDir } from "../records/trail";
import { Evaluation, promQuery, TriggerEvaluator } from "../incident/triggers";
import { decideAutoRollback, StackHolder, watchRollbackReason } from "../planning/auto-rollback";
import type { TriggerRule } from "../versions/schema";
import { readHistoryAndTags } from "./apply";
import { ReadinessWatch, SeenReadinessChange } from "./readiness-watch";
import { rollback, RollbackResult } from "./rollback";

/** Options for {@link watch}. */
export interface WatchOptions extends ProgressOptions {
  /**
   * Roll back to the last version that verified when a trigger fires, when the policy's guards allow it
   * (`policy.triggers.autoRollback`): it waits while another operation holds the stack, and raises
   * {@link TriggerFiredError} with the reason when a guard withholds it. Without it, a fired trigger raises
   * {@link TriggerFiredError}.
   */
  autoRollback?: boolean;
  /** Overrides the policy's interval between evaluations. */
  intervalMs?: number;
  /** Stop after this many evaluations (default: until a trigger fires or `signal` aborts). */
  maxEvaluations?: number;
  signal?: AbortSignal;
  /** Each evaluation, as it happens. */
  onEvaluation?: (evaluation: Evaluation) => void;
  /** Record the current value of every baseline rule's query as its baseline, then stop. */
  recordBaseline?: boolean;
  approvals?: ApprovalInput;
  approveDataLoss?: boolean;
}

/** How a watch ended. */
export interface WatchResult {
  stack: string;
  evaluations: number;
  /** The evaluation in which a trigger fired. */
  fired?: Evaluation;
  rollback?: RollbackResult;
  /** From the start of the breach to the start of the rollback. */
  breachToRollbackMs?: number;
  /** The signals after the rollback, when the policy's `recoveryTimeoutMs` had watch wait for them. */
  recovery?: SignalRecovery;
  baselines?: Record<string, number>;
  /** The policy's readiness checks made during the watch, and each way back that broke or came back. */
  readiness?: { checks: number; changes: SeenReadinessChange[] };
  /** Set when the watch stopped while a fired trigger's automatic rollback was deferred: why it waited. */
  deferred?: string;
}

/**
 * Evaluates the stack's trigger policy on an interval, re-reading the stack before each evaluation (a
 * deploy made meanwhile moves what is judged, where it is probed, and where a rollback goes); when a
 * trigger holds for its window, rolls back to the last version that verified (with `autoRollback`), recording the trigger in the rollback's
 * incident record, notifications and history. The policy's guards (`policy.triggers.autoRollback`) decide
 * first: while another operation holds the stack the rollback waits (watch keeps evaluating, and rolls
 * back once the stack is free if the trigger still holds); a failed rollback, a version an automatic
 * rollback put live, a change older than `maxChangeAgeMs` or more than `maxRollbacks` in `windowMs`
 * raise {@link TriggerFiredError} instead, after an incident record and a `rollback.withheld` webhook.
 */
export async function watch(ctx: EnvironmentContext, options: WatchOptions): Promise<WatchResult> {
  const policy = ctx.stack.settings.policy.triggers;
  if (!policy) throw new InvalidVersionFileError(`${ctx.stack.dir}/stack.yaml`, ["policy.triggers: watch needs trigger rules"]);
  const engine = await ctx.openEngine({ create: false });
  try {
    if (options.recordBaseline) {
      const baselines: Record<string, number> = {};
      for (const rule of policy.rules) {
        if (!("query" in rule) || rule.aboveBaseline === undefined || !policy.prometheus) continue;
        const value = await promQuery(policy.prometheus, rule.query, policy.timeoutMs);
        if (value !== undefined) baselines[rule.name] = value;
      }
      await recordStoreOf(engine).update((r) => {
        for (const [n, v] of Object.entries(baselines)) r.baselines[baselineKey(n)] = v;
      });
      return { stack: ctx.stack.name, evaluations: 0, baselines };
    }
    return await evaluateUntilFired(ctx, engine, policy, options);
  } finally {
    engine.close();
  }
}

/** What an evaluation judges and what a rollback would do: read from the backend, not remembered. */
interface Watched {
  history: HistoryEntry[];
  records: StackRecords;
  revision: number;
  live?: string;
  rollbackTo?: string;
  endpoint?: string;
  baselines: Record<string, number>;
}

/**
 * Reads what the stack is now: history and tags on every evaluation (a deploy or a baseline recorded by
 * another process since the last one counts), the outputs (the endpoint) when a new revision appeared.
 */
async function readWatched(engine: EngineStack, rules: TriggerRule[], before?: Watched): Promise<Watched> {
  const { history, records } = await readHistoryAndTags(engine);
  const revision = history[0]?.revision ?? 0;
  const endpoint = before && before.revision === revision ? before.endpoint : await engine.outputs().then((o) => o.endpoint?.value);
  const live = liveState(history).version;
  return {
    history,
    records,
    revision,
    live,
    rollbackTo: lastVerifiedVersion(history, live),
    endpoint: typeof endpoint === "string" ? endpoint : undefined,
    baselines: Object.fromEntries(
      rules.flatMap((r) => {
        const v = baselineOf(records, r.name);
        return v === undefined ? [] : [[r.name, v]];
      }),
    ),
  };
}

/**
 * What holds the stack now, when something does: an in-flight mark whose holder is not proven gone (and
 * whose update has not ended in history), or a Pulumi lock not proven gone. A mark or lock whose holder is
 * gone does not hold it: the rollback recovers from what it left.
 */
async function holderOf(engine: EngineStack, records: StackRecords): Promise<StackHolder | undefined> {
  const mark = await engine.inFlightMark(records);
  if (mark && mark.liveness.state !== "dead" && !(await engine.markEnded(mark))) return { what: mark.what, detail: mark.liveness.detail };
  const lock = (await engine.locks(mark, await engine.previewLeases())).find((l) => l.liveness.state !== "dead");
  if (lock) return { what: lock.of ? (lock.of as InFlightMark).what : "Pulumi's lock on the stack", detail: lock.liveness.detail };
  return undefined;
}

/**
 * The incident of a fired trigger whose automatic rollback has not run: written as soon as it waits, so
 * `incident show` has it; ended when it is withheld, or when the trigger stops holding; merged into the
 * rollback's own record when the rollback runs after all.
 */
class PendingIncident {
  readonly recorder: IncidentRecorder;
  private files?: { json: string; markdown: string };
  private told = false;
  reason?: string;

  constructor(
    private readonly ctx: EnvironmentContext,
    trigger: NonNullable<IncidentRecord["trigger"]>,
    from: string | undefined,
    to: string | undefined,
  ) {
    this.recorder = new IncidentRecorder({ stack: ctx.stack.name, from, to: to ?? "(none)", actor: ctx.actor, reason: `${watchRollbackReason}${trigger.rule}: ${trigger.detail}`, trigger });
    this.recorder.record.timeline.push(
      { at: trigger.breachedAt, step: "threshold breached", detail: `${trigger.rule}: ${trigger.detail}` },
      { at: trigger.firedAt, step: "trigger fired" },
    );
  }

  /** Tells the policy's webhooks (never throws; failures are kept in the record). */
  async tell(event: RollbackEvent["event"], detail: string, options: ProgressOptions): Promise<void> {
    const webhooks = this.ctx.stack.settings.policy.notify;
    if (!webhooks?.webhooks.length) return;
    const r = this.recorder.record;
    const sent = await notify(
      webhooks.webhooks,
      { event, stack: r.stack, from: r.from, to: r.to, reason: r.reason, trigger: r.trigger ? `${r.trigger.rule}: ${r.trigger.detail}` : undefined, detail, at: new Date().toISOString() },
      webhooks.timeoutMs,
    );
    r.notifications.push(...sent);
    for (const n of sent.filter((x) => !x.ok)) options.onProgress?.({ type: "diagnostic", severity: "warning", message: `webhook ${n.url} (${n.event}) failed: ${n.error}` });
  }

  /** Records that the rollback waits, once per reason; the first time, tells the webhooks. */
  async defer(reason: string, options: ProgressOptions): Promise<boolean> {
    if (this.reason === reason) return false;
    this.reason = reason;
    this.recorder.step("automatic rollback deferred", reason);
    this.recorder.record.result = `deferred: ${reason}`;
    if (!this.told) {
      this.told = true;
      await this.tell("rollback.deferred", reason, options);
    }
    this.write();
    return true;
  }

  /** Ends the incident without a rollback. */
  end(step: string, detail: string, result: string): IncidentRecord {
    this.recorder.step(step, detail);
    Object.assign(this.recorder.record, { result, endedAt: new Date().toISOString() });
    this.write();
    return this.recorder.record;
  }

  /** Moves this record's steps into the record of the rollback that ran after all, and removes this one. */
  mergeInto(rollbackIncident: string): void {
    const own = this.recorder.record.timeline;
    const notifications = this.recorder.record.notifications;
    updateIncident(rollbackIncident, (r) => {
      const seen = new Set(r.timeline.map((t) => `${t.at} ${t.step}`));
      r.timeline = [...r.timeline, ...own.filter((t: TimelineEntry) => !seen.has(`${t.at} ${t.step}`))].sort((a, b) => a.at.localeCompare(b.at));
      r.notifications = [...notifications, ...r.notifications];
    });
    if (this.files) for (const f of [this.files.json, this.files.markdown]) fs.rmSync(f, { force: true });
  }

  private write(): void {
    this.files = this.recorder.write(incidentsDir(this.ctx));
  }
}

async function evaluateUntilFired(
  ctx: EnvironmentContext,
  engine: EngineStack,
  policy: NonNullable<EnvironmentContext["stack"]["settings"]["policy"]["triggers"]>,
  options: WatchOptions,
): Promise<WatchResult> {
  const interval = options.intervalMs ?? policy.intervalMs;
  // The ways back, checked on their own interval beside the triggers, when the policy asks for it.
  const readinessPolicy = ctx.stack.settings.policy.readiness;
  const readiness = readinessPolicy ? new ReadinessWatch(ctx, readinessPolicy.intervalMs, options) : undefined;
  const readinessSeen = () => (readiness ? { readiness: { checks: readiness.checks, changes: readiness.changes } } : {});
  let watched: Watched | undefined;
  let evaluator: TriggerEvaluator | undefined;
  let pending: PendingIncident | undefined;
  let n = 0;
  while (!options.signal?.aborted) {
    n += 1;
    try {
      const now = await readWatched(engine, policy.rules, watched);
      const changed = !watched || now.revision !== watched.revision || now.endpoint !== watched.endpoint;
      if (changed || JSON.stringify(now.baselines) !== JSON.stringify(watched!.baselines)) {
        // A new release gets its own breach windows and failure counts: the old one's are not its own.
        evaluator = new TriggerEvaluator(policy.rules, { prometheus: policy.prometheus, endpoint: now.endpoint, healthPath: policy.healthPath, timeoutMs: policy.timeoutMs, baselines: now.baselines });
      }
      if (changed) {
        options.onProgress?.({
          type: "phase",
          phase: "watch",
          message: `watching ${now.live ?? "(nothing live)"} on ${ctx.stack.name} (revision ${now.revision}) at ${now.endpoint ?? "(no endpoint)"}; ` +
            (now.rollbackTo ? `a trigger rolls back to ${now.rollbackTo}` : "no verified version to roll back to"),
        });
        const newest = now.history[0];
        if (watched && newest) pending?.recorder.step("stack changed", `revision ${newest.revision}: ${newest.op} ${newest.to ?? ""} ${newest.result}; its signals are judged afresh`);
      }
      watched = now;
    } catch (err) {
      // The backend could not be read this time: judge with what was read last, and say so.
      if (!watched) throw err;
      options.onProgress?.({ type: "diagnostic", severity: "warning", message: `could not re-read stack ${ctx.stack.name}: ${(err as Error).message.split("\n")[0]}; using revision ${watched.revision}` });
    }
    readiness?.tick();
    const evaluation = await evaluator!.evaluate();
    options.onEvaluation?.(evaluation);
    const fired = evaluation.fired;
    if (!fired && pending) {
      const why = "the trigger no longer holds; no rollback ran";
      pending.end("trigger cleared", why, `no rollback: ${why}`);
      options.onProgress?.({ type: "phase", phase: "watch", message: `the trigger no longer holds on ${ctx.stack.name}: the deferred automatic rollback is dropped (incident ${pending.recorder.record.id})` });
      pending = undefined;
    }
    if (fired) {
      // A readiness check running now previews the stack: let it end before the rollback takes the stack.
      await readiness?.settle();
      const { live, rollbackTo: to } = watched!;
      const trigger = { rule: fired.name, detail: fired.detail, breachedAt: fired.breachedAt ?? evaluation.at, firedAt: evaluation.at };
      if (!options.autoRollback) {
        throw new TriggerFiredError(ctx.stack.name, fired.name, fired.detail, to, { breachedAt: trigger.breachedAt, firedAt: trigger.firedAt });
      }
      // Read who holds the stack and what its history says now, decide as data, then act on the decision.
      const heldBy = await holderOf(engine, watched!.records).catch((err: Error) => ({ what: "the stack's holder could not be read", detail: err.message.split("\n")[0] }));
      const decision = decideAutoRollback({ history: watched!.history, rollbackTo: to, heldBy, now: Date.now(), guards: policy.autoRollback });
      if (decision.action === "defer") {
        pending ??= new PendingIncident(ctx, trigger, live, to);
        if (await pending.defer(decision.reason, options)) {
          options.onProgress?.({
            type: "phase",
            phase: "watch",
            message: `trigger "${fired.name}" fired (${fired.detail}); automatic rollback ${live ?? "(nothing)"} -> ${to ?? "(none)"} deferred: ${decision.reason}; ` +
              `evaluating again every ${interval} ms, rolling back once the stack is free if the trigger still holds (incident ${pending.recorder.record.id})`,
          });
        }
      } else if (decision.action === "page") {
        const incident = pending ?? new PendingIncident(ctx, trigger, live, to);
        pending = undefined;
        incident.recorder.record.withheld = { guard: decision.guard, reason: decision.reason };
        await incident.tell("rollback.withheld", decision.reason, options);
        const record = incident.end("automatic rollback withheld", decision.reason, `withheld: ${decision.reason}`);
        options.onProgress?.({ type: "phase", phase: "watch", message: `trigger "${fired.name}" fired (${fired.detail}); automatic rollback withheld: ${decision.reason} (incident ${record.id})` });
        throw new TriggerFiredError(ctx.stack.name, fired.name, fired.detail, to, {
          breachedAt: trigger.breachedAt,
          firedAt: trigger.firedAt,
          withheld: record.withheld,
          incident: record.id,
        });
      } else {
        options.onProgress?.({ type: "phase", phase: "rollback", message: `trigger "${fired.name}" fired (${fired.detail}); rolling back ${decision.from} -> ${decision.to}` });
        let back: RollbackResult | undefined;
        try {
          back = await rollback(ctx, {
            to: decision.to,
            reason: `${watchRollbackReason}${fired.name}: ${fired.detail}`,
            trigger,
            approvals: options.approvals,
            approveDataLoss: options.approveDataLoss,
            onProgress: options.onProgress,
            onEngineEvent: options.onEngineEvent,
          });
        } catch (err) {
          // Another operation took the stack between the decision and the rollback (refused before anything
          // changed): the rollback waits for it like any other, never exit 7 mid-incident.
          if (err instanceof ConcurrentOperationError || err instanceof StalePlanError) {
            pending ??= new PendingIncident(ctx, trigger, live, to);
            const reason = err.message.split(". ")[0];
            if (await pending.defer(reason, options)) {
              options.onProgress?.({ type: "phase", phase: "watch", message: `automatic rollback ${decision.from} -> ${decision.to} deferred: ${reason}; evaluating again (incident ${pending.recorder.record.id})` });
            }
          } else {
            const failed = (err as { details?: { incident?: { json?: string } } }).details?.incident?.json;
            if (pending && failed) pending.mergeInto(failed);
            throw err;
          }
        }
        if (back) {
          const b = back;
          if (pending && b.incident) pending.mergeInto(b.incident.json);
          // Nothing applied (the target is live and verified already): the wait's own record ends, saying so.
          else if (pending) pending.end("rollback skipped", b.skipped ?? "nothing was applied", `no rollback: ${b.skipped ?? "nothing was applied"}`);
          pending = undefined;
          const recovery = policy.recoveryTimeoutMs > 0 ? await awaitRecovery(policy, watched!.baselines, interval, options) : undefined;
          if (recovery && b.incident) {
            updateIncident(b.incident.json, (r) => {
              r.recovery = recovery;
              r.timeline.push({ at: recovery.at, step: recovery.recovered ? "signals recovered" : "signals still breached", detail: recovery.rules.map((x) => `${x.name}: ${x.detail}`).join("; ") });
            });
          }
          if (readiness?.changes.length && b.incident) {
            // What the watch saw of the ways back before it rolled back: marks on the incident's timeline.
            updateIncident(b.incident.json, (r) => {
              for (const c of readiness.changes) r.timeline.push({ at: c.at, step: c.change === "broken" ? `way back to ${c.version} broke` : `way back to ${c.version} restored`, detail: c.detail });
              r.timeline.sort((a, b) => a.at.localeCompare(b.at));
            });
          }
          return { stack: ctx.stack.name, evaluations: n, fired: evaluation, rollback: b, breachToRollbackMs: b.breachToRollbackMs, recovery, ...readinessSeen() };
        }
      }
    }
    if (options.maxEvaluations && n >= options.maxEvaluations) break;
    await pause(interval, options.signal);
  }
  await readiness?.settle();
  if (pending) {
    const why = pending.reason ?? "the rollback was deferred";
    pending.end("watch stopped", `the automatic rollback was still deferred: ${why}`, `no rollback: watch stopped while the rollback was deferred (${why})`);
    return { stack: ctx.stack.name, evaluations: n, deferred: why, ...readinessSeen() };
  }
  return { stack: ctx.stack.name, evaluations: n, ...readinessSeen() };
}

/** Waits `ms`, or less when `signal` aborts. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });
}

/**
 * After a rollback: evaluates the query rules every interval until each reads a value within its bound
 * (a rate over a window still holds the bad release's samples until the window has passed), at most
 * `recoveryTimeoutMs`. Health rules are left out: the rollback's verification already checked health.
 */
async function awaitRecovery(
  policy: NonNullable<EnvironmentContext["stack"]["settings"]["policy"]["triggers"]>,
  baselines: Record<string, number>,
  interval: number,
  options: WatchOptions,
): Promise<SignalRecovery> {
  const rules = policy.rules.filter((r) => "query" in r);
  const evaluator = new TriggerEvaluator(rules, { prometheus: policy.prometheus, healthPath: policy.healthPath, timeoutMs: policy.timeoutMs, baselines });
  const deadline = Date.now() + policy.recoveryTimeoutMs;
  options.onProgress?.({ type: "phase", phase: "watch", message: `waiting up to ${Math.round(policy.recoveryTimeoutMs / 1000)} s for the signals to come back within their bounds` });
  for (;;) {
    const e = await evaluator.evaluate();
    options.onEvaluation?.(e);
    const recovered = e.rules.every((r) => r.value !== undefined && !r.breached);
    if (recovered || Date.now() >= deadline || options.signal?.aborted) {
      return { recovered, at: e.at, rules: e.rules.map((r) => ({ name: r.name, value: r.value, threshold: r.threshold, detail: r.detail })) };
    }
    await pause(interval, options.signal);
  }
}
