import type { ApprovalInput } from "../policy/approvals";
import type { EngineStack } from "../engine/stack";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { InvalidVersionFileError, TriggerFiredError } from "../errors";
import { HistoryEntry, lastVerifiedVersion, liveState } from "../records/history-record";
import { SignalRecovery, updateIncident } from "../incident/incident";
import { baselineKey, baselineOf, recordStoreOf } from "../records/ledger";
import { Evaluation, promQuery, TriggerEvaluator } from "../incident/triggers";
import type { TriggerRule } from "../versions/schema";
import { readHistoryAndTags } from "./apply";
import { ReadinessWatch, SeenReadinessChange } from "./readiness-watch";
import { rollback, RollbackResult } from "./rollback";

/** Options for {@link watch}. */
export interface WatchOptions extends ProgressOptions {
  /** Roll back to the last version that verified when a trigger fires; else raise {@link TriggerFiredError}. */
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
}

/**
 * Evaluates the stack's trigger policy on an interval, re-reading the stack before each evaluation (a
 * deploy made meanwhile moves what is judged, where it is probed, and where a rollback goes); when a
 * trigger holds for its window, rolls back to the last version that verified (with `autoRollback`), recording the trigger in the rollback's
 * incident record, notifications and history.
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
    if (fired) {
      // A readiness check running now previews the stack: let it end before the rollback takes the stack.
      await readiness?.settle();
      const { live, rollbackTo: to } = watched!;
      if (!options.autoRollback || !to) {
        throw new TriggerFiredError(ctx.stack.name, fired.name, fired.detail, to, { breachedAt: fired.breachedAt ?? evaluation.at, firedAt: evaluation.at });
      }
      const trigger = { rule: fired.name, detail: fired.detail, breachedAt: fired.breachedAt ?? evaluation.at, firedAt: evaluation.at };
      options.onProgress?.({ type: "phase", phase: "rollback", message: `trigger "${fired.name}" fired (${fired.detail}); rolling back ${live} -> ${to}` });
      const back = await rollback(ctx, {
        to,
        reason: `trigger: ${fired.name}: ${fired.detail}`,
        trigger,
        approvals: options.approvals,
        approveDataLoss: options.approveDataLoss,
        onProgress: options.onProgress,
        onEngineEvent: options.onEngineEvent,
      });
      const recovery = policy.recoveryTimeoutMs > 0 ? await awaitRecovery(policy, watched!.baselines, interval, options) : undefined;
      if (recovery && back.incident) {
        updateIncident(back.incident.json, (r) => {
          r.recovery = recovery;
          r.timeline.push({ at: recovery.at, step: recovery.recovered ? "signals recovered" : "signals still breached", detail: recovery.rules.map((x) => `${x.name}: ${x.detail}`).join("; ") });
        });
      }
      if (readiness?.changes.length && back.incident) {
        // What the watch saw of the ways back before it rolled back: marks on the incident's timeline.
        updateIncident(back.incident.json, (r) => {
          for (const c of readiness.changes) r.timeline.push({ at: c.at, step: c.change === "broken" ? `way back to ${c.version} broke` : `way back to ${c.version} restored`, detail: c.detail });
          r.timeline.sort((a, b) => a.at.localeCompare(b.at));
        });
      }
      return { stack: ctx.stack.name, evaluations: n, fired: evaluation, rollback: back, breachToRollbackMs: back.breachToRollbackMs, recovery, ...readinessSeen() };
    }
    if (options.maxEvaluations && n >= options.maxEvaluations) {
      await readiness?.settle();
      return { stack: ctx.stack.name, evaluations: n, ...readinessSeen() };
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, interval);
      options.signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
    });
  }
  await readiness?.settle();
  return { stack: ctx.stack.name, evaluations: n, ...readinessSeen() };
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
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, interval);
      options.signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
    });
  }
}
