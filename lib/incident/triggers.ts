import type { TriggerRule } from "../versions/schema";

/** One rule's outcome in one evaluation. */
export interface RuleEvaluation {
  name: string;
  /** The measured value (query rules) or the consecutive failures (health rules). */
  value?: number;
  threshold?: number;
  breached: boolean;
  /** True once the breach has held for the rule's window (or the failure count is reached). */
  fired: boolean;
  detail: string;
  /** When the current breach began. */
  breachedAt?: string;
}

/** One evaluation of every rule. */
export interface Evaluation {
  at: string;
  rules: RuleEvaluation[];
  /** The first rule that fired, if any. */
  fired?: RuleEvaluation;
}

/** Where the rules read their signals. */
export interface SignalSources {
  /** Base URL of a Prometheus-compatible server (its `/api/v1/query` is used). */
  prometheus?: string;
  /** The program's endpoint, for health rules. */
  endpoint?: string;
  healthPath: string;
  timeoutMs: number;
  /** Recorded baselines by rule name. */
  baselines: Record<string, number>;
}

/** Runs a PromQL instant query; resolves to the highest sample, or undefined when the result is empty. */
export async function promQuery(base: string, query: string, timeoutMs: number): Promise<number | undefined> {
  const url = `${base.replace(/\/$/, "")}/api/v1/query?query=${encodeURIComponent(query)}`;
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: unknown } };
  if (body.status !== "success" || !body.data) throw new Error(`query failed: ${body.error ?? res.status}`);
  const samples =
    body.data.resultType === "scalar"
      ? [body.data.result as [number, string]]
      : (body.data.result as Array<{ value: [number, string] }>).map((r) => r.value);
  const values = samples.map(([, v]) => Number(v)).filter((v) => !Number.isNaN(v));
  return values.length ? Math.max(...values) : undefined;
}

/** A measured value for people: four significant digits (a ratio of real counters is 0.25274725274725274). */
function readable(v: number): string {
  return String(Number(v.toPrecision(4)));
}

async function healthy(url: string, timeoutMs: number): Promise<string | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.ok ? undefined : `answered ${res.status}`;
  } catch (err) {
    const e = err as Error;
    return String(e.cause instanceof Error ? e.cause.message : e.message);
  }
}

/**
 * Evaluates trigger rules over time. A query rule breaches when its value is above its bound (absolute,
 * or a multiple of a baseline) and fires once the breach has lasted `forMs`; a health rule fires after
 * `healthFailures` consecutive failed checks. A signal that cannot be read is reported, never a breach.
 */
export class TriggerEvaluator {
  private breachSince = new Map<string, number>();
  private failures = new Map<string, number>();

  constructor(
    private readonly rules: TriggerRule[],
    private readonly sources: SignalSources,
  ) {}

  async evaluate(now = Date.now()): Promise<Evaluation> {
    const rules = await Promise.all(this.rules.map((r) => this.evaluateRule(r, now)));
    return { at: new Date(now).toISOString(), rules, fired: rules.find((r) => r.fired) };
  }

  private since(name: string, breached: boolean, now: number): number | undefined {
    if (!breached) {
      this.breachSince.delete(name);
      return undefined;
    }
    if (!this.breachSince.has(name)) this.breachSince.set(name, now);
    return this.breachSince.get(name);
  }

  private async evaluateRule(rule: TriggerRule, now: number): Promise<RuleEvaluation> {
    if ("healthFailures" in rule) {
      if (!this.sources.endpoint) return { name: rule.name, breached: false, fired: false, detail: "no endpoint to check" };
      const failure = await healthy(`${this.sources.endpoint.replace(/\/$/, "")}${this.sources.healthPath}`, this.sources.timeoutMs);
      const count = failure ? (this.failures.get(rule.name) ?? 0) + 1 : 0;
      this.failures.set(rule.name, count);
      const since = this.since(rule.name, !!failure, now);
      return {
        name: rule.name,
        value: count,
        threshold: rule.healthFailures,
        breached: !!failure,
        fired: count >= rule.healthFailures,
        detail: failure ? `health check failed ${count} time(s) in a row: ${failure}` : "healthy",
        breachedAt: since !== undefined ? new Date(since).toISOString() : undefined,
      };
    }
    if (!this.sources.prometheus) return { name: rule.name, breached: false, fired: false, detail: "no prometheus configured" };
    let value: number | undefined;
    try {
      value = await promQuery(this.sources.prometheus, rule.query, this.sources.timeoutMs);
    } catch (err) {
      this.since(rule.name, false, now);
      return { name: rule.name, breached: false, fired: false, detail: `signal unavailable: ${(err as Error).message}` };
    }
    const baseline = rule.baseline ?? this.sources.baselines[rule.name];
    const bounds = [
      ...(rule.above !== undefined ? [{ threshold: rule.above, label: `${rule.above}` }] : []),
      ...(rule.aboveBaseline !== undefined && baseline !== undefined
        ? [{ threshold: rule.aboveBaseline * baseline, label: `${rule.aboveBaseline}x baseline ${readable(baseline)}` }]
        : []),
    ];
    if (value === undefined) {
      this.since(rule.name, false, now);
      return { name: rule.name, breached: false, fired: false, detail: "no data" };
    }
    if (bounds.length === 0) return { name: rule.name, value, breached: false, fired: false, detail: "no baseline recorded (watch --record-baseline)" };
    const hit = bounds.find((b) => value! > b.threshold);
    const since = this.since(rule.name, !!hit, now);
    const held = since !== undefined ? now - since : 0;
    const bound = hit ?? bounds[0];
    return {
      name: rule.name,
      value,
      threshold: bound.threshold,
      breached: !!hit,
      fired: !!hit && held >= rule.forMs,
      detail: `${readable(value)} ${hit ? ">" : "<="} ${bound.label}${hit && rule.forMs ? ` for ${Math.round(held / 1000)} s of ${Math.round(rule.forMs / 1000)} s` : ""}`,
      breachedAt: since !== undefined ? new Date(since).toISOString() : undefined,
    };
  }
}
