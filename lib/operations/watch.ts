import type { ApprovalInput } from "../approvals";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { InvalidVersionFileError, TriggerFiredError } from "../errors";
import { HistoryEntry, lastVerifiedVersion, liveState } from "../history-record";
import { baselineKey, baselineOf, recordStoreOf, StackRecords } from "../ledger";
import { Evaluation, promQuery, TriggerEvaluator } from "../triggers";
import { readHistoryAndTags } from "./apply";
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
  baselines?: Record<string, number>;
}

/**
 * Evaluates the stack's trigger policy on an interval; when a trigger holds for its window, rolls back to
 * the last version that verified (with `autoRollback`), recording the trigger in the rollback's
 * incident record, notifications and history.
 */
export async function watch(ctx: EnvironmentContext, options: WatchOptions): Promise<WatchResult> {
  const policy = ctx.stack.settings.policy.triggers;
  if (!policy) throw new InvalidVersionFileError(`${ctx.stack.dir}/stack.yaml`, ["policy.triggers: watch needs trigger rules"]);
  const engine = await ctx.openEngine({ create: false });
  let endpoint: unknown;
  let records: StackRecords;
  let history: HistoryEntry[];
  try {
    [{ history, records }, endpoint] = await Promise.all([readHistoryAndTags(engine), engine.outputs().then((o) => o.endpoint?.value)]);
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
  } finally {
    engine.close();
  }
  const baselines = Object.fromEntries(
    policy.rules.flatMap((r) => {
      const v = baselineOf(records, r.name);
      return v === undefined ? [] : [[r.name, v]];
    }),
  );
  const evaluator = new TriggerEvaluator(policy.rules, {
    prometheus: policy.prometheus,
    endpoint: typeof endpoint === "string" ? endpoint : undefined,
    healthPath: policy.healthPath,
    timeoutMs: policy.timeoutMs,
    baselines,
  });
  const interval = options.intervalMs ?? policy.intervalMs;
  let n = 0;
  while (!options.signal?.aborted) {
    n += 1;
    const evaluation = await evaluator.evaluate();
    options.onEvaluation?.(evaluation);
    const fired = evaluation.fired;
    if (fired) {
      const live = liveState(history).version;
      const to = lastVerifiedVersion(history, live);
      if (!options.autoRollback || !to) throw new TriggerFiredError(ctx.stack.name, fired.name, fired.detail, to);
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
      return { stack: ctx.stack.name, evaluations: n, fired: evaluation, rollback: back, breachToRollbackMs: back.breachToRollbackMs };
    }
    if (options.maxEvaluations && n >= options.maxEvaluations) return { stack: ctx.stack.name, evaluations: n };
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, interval);
      options.signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
    });
  }
  return { stack: ctx.stack.name, evaluations: n };
}
