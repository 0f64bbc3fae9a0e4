import * as fs from "node:fs";
import * as path from "node:path";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { UnknownIncidentError } from "../errors";
import type { HistoryEntry } from "../records/history-record";
import { IncidentRecord, updateIncident } from "../incident/incident";
import { IncidentMark, IncidentSeries, incidentChartSpec, renderIncidentHtml, renderSvg } from "../incident/incident-page";
import { baselineOf } from "../records/ledger";
import { incidentsDir } from "../records/trail";
import { readHistoryAndTags } from "./apply";

/** Options for {@link showIncident}. */
export interface IncidentShowOptions extends ProgressOptions {
  /** The incident's id (its record's file name without `.json`). */
  id: string;
  /** Where to write the incident page; the SVG goes beside it (same name, `.svg`). Without it, only the record is read. */
  html?: string;
  /** How much of the signals to show before the first mark and after the last, in ms. */
  marginMs?: number;
  /** The clock: nothing after it is queried. */
  now?: () => number;
}

/** An incident, and its page when one was rendered. */
export interface IncidentShowResult {
  id: string;
  record: IncidentRecord;
  /** The record's files. */
  files: { json: string; markdown: string };
  page?: { html: string; svg: string; marks: IncidentMark[]; series: Array<Omit<IncidentSeries, "points"> & { points: number }> };
  warnings: string[];
}

/**
 * Reads an incident record; with `html`, renders its page: each query rule of the stack's trigger policy
 * over the incident from Prometheus range queries, the rule's threshold, and marks for the deploy that
 * made the release live, the breach, the trigger, the rollback's start and end, verification and the
 * signals' recovery. Writes the page and its SVG, and links them from the record and its Markdown.
 * A signal that cannot be read is drawn as missing and reported in `warnings`, never an error.
 */
export async function showIncident(ctx: EnvironmentContext, options: IncidentShowOptions): Promise<IncidentShowResult> {
  const dir = incidentsDir(ctx);
  const known = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort() : [];
  if (!known.includes(options.id)) throw new UnknownIncidentError(ctx.stack.name, options.id, known);
  const files = { json: path.join(dir, `${options.id}.json`), markdown: path.join(dir, `${options.id}.md`) };
  const record = JSON.parse(fs.readFileSync(files.json, "utf8")) as IncidentRecord;
  if (!options.html) return { id: options.id, record, files, warnings: [] };

  const warnings: string[] = [];
  const { history, baselines } = await readStack(ctx, warnings);
  const marks = incidentMarks(record, history);
  const now = options.now?.() ?? Date.now();
  const margin = options.marginMs ?? 60_000;
  const times = marks.map((m) => Date.parse(m.at));
  const start = Math.min(...times) - margin;
  const end = Math.min(now, Math.max(...times) + margin / 2);
  const series = await querySeries(ctx, baselines, start, end, warnings);

  const html = path.resolve(options.html);
  const svgPath = html.replace(/(\.html?)?$/i, ".svg");
  const spec = incidentChartSpec(record, series, marks);
  const svg = await renderSvg(spec);
  fs.mkdirSync(path.dirname(html), { recursive: true });
  fs.writeFileSync(svgPath, svg);
  const fromPage = (p: string) => path.relative(path.dirname(html), p);
  fs.writeFileSync(html, renderIncidentHtml(record, svg, spec, marks, series, { markdown: fromPage(files.markdown), svg: fromPage(svgPath) }));
  const updated = updateIncident(files.json, (r) => {
    r.page = { html: path.relative(dir, html), svg: path.relative(dir, svgPath) };
  });
  return {
    id: options.id,
    record: updated,
    files,
    page: { html, svg: svgPath, marks, series: series.map((s) => ({ ...s, points: s.points.length })) },
    warnings,
  };
}

/** History (for the deploy mark) and recorded baselines (for thresholds); what cannot be read is a warning. */
async function readStack(ctx: EnvironmentContext, warnings: string[]): Promise<{ history: HistoryEntry[]; baselines: Record<string, number> }> {
  const rules = ctx.stack.settings.policy.triggers?.rules ?? [];
  try {
    const engine = await ctx.openEngine({ create: false });
    try {
      const { history, records } = await readHistoryAndTags(engine);
      const baselines = Object.fromEntries(rules.flatMap((r) => {
        const v = baselineOf(records, r.name);
        return v === undefined ? [] : [[r.name, v]];
      }));
      return { history, baselines };
    } finally {
      engine.close();
    }
  } catch (err) {
    warnings.push(`could not read the stack's history and baselines: ${(err as Error).message.split("\n")[0]}`);
    return { history: [], baselines: {} };
  }
}

/** The moments to mark, from the record's timeline and the update that made the rolled-back release live. */
export function incidentMarks(record: IncidentRecord, history: HistoryEntry[]): IncidentMark[] {
  const step = (name: string | RegExp) => record.timeline.find((t) => (typeof name === "string" ? t.step === name : name.test(t.step)))?.at;
  const deploy = history.find((h) => h.to === record.from && (h.op === "deploy" || h.op === "rollback") && h.startedAt < record.startedAt);
  const waited: Array<[string, string | undefined]> = [["rollback deferred", step("automatic rollback deferred")]];
  if (record.withheld) {
    // No rollback ran: the page shows the wait, if any, and where a guard left the decision to a person.
    const withheld: Array<[string, string | undefined]> = [
      [`deploy ${record.from ?? ""}`.trim(), deploy?.startedAt],
      ["breach", record.trigger?.breachedAt],
      ["trigger", record.trigger?.firedAt],
      ...waited,
      ["rollback withheld", step("automatic rollback withheld")],
    ];
    return withheld.flatMap(([label, at]) => (at ? [{ label, at }] : [])).sort((a, b) => a.at.localeCompare(b.at));
  }
  const marks: Array<[string, string | undefined]> = [
    [`deploy ${record.from ?? ""}`.trim(), deploy?.startedAt],
    ["breach", record.trigger?.breachedAt],
    ["trigger", record.trigger?.firedAt],
    ...waited,
    ["rollback start", record.startedAt],
    // The update's end (traffic is back); the record's own end comes after verification.
    ["rollback end", step("apply finished") ?? record.endedAt],
    [`verification ${record.verification?.passed ? "passed" : "failed"}`, step(/^verification (passed|failed)$/)],
    ["recovered", step("signals recovered")],
    // What the watch saw of the ways back before it rolled back.
    ...record.timeline.filter((t) => /^way back to \S+ (broke|restored)$/.test(t.step)).map((t): [string, string] => [t.step, t.at]),
  ];
  return marks.flatMap(([label, at]) => (at ? [{ label, at }] : [])).sort((a, b) => a.at.localeCompare(b.at));
}

/** Each query rule of the policy over [start, end] from Prometheus' `/api/v1/query_range`. */
async function querySeries(ctx: EnvironmentContext, baselines: Record<string, number>, start: number, end: number, warnings: string[]): Promise<IncidentSeries[]> {
  const policy = ctx.stack.settings.policy.triggers;
  const rules = (policy?.rules ?? []).flatMap((r) => ("query" in r ? [r] : []));
  // About 600 points across the chart, never finer than Prometheus' 1 s.
  const step = Math.max(1, Math.ceil((end - start) / 1000 / 600));
  return Promise.all(
    rules.map(async (rule): Promise<IncidentSeries> => {
      const baseline = rule.baseline ?? baselines[rule.name];
      const threshold = rule.above ?? (rule.aboveBaseline !== undefined && baseline !== undefined ? rule.aboveBaseline * baseline : undefined);
      const base: IncidentSeries = { rule: rule.name, query: rule.query, threshold, points: [] };
      if (!policy?.prometheus) return { ...base, missing: "no prometheus in the policy" };
      try {
        const url = `${policy.prometheus.replace(/\/$/, "")}/api/v1/query_range?${new URLSearchParams({ query: rule.query, start: String(start / 1000), end: String(end / 1000), step: String(step) })}`;
        const res = await fetch(url, { signal: AbortSignal.timeout(policy.timeoutMs * 5) });
        const body = (await res.json()) as { status: string; error?: string; data?: { result: Array<{ values: Array<[number, string]> }> } };
        if (body.status !== "success" || !body.data) throw new Error(body.error ?? `answered ${res.status}`);
        // The rule compares the highest sample: so does the chart, at each step.
        const byTime = new Map<number, number>();
        for (const s of body.data.result) {
          for (const [t, v] of s.values) {
            const n = Number(v);
            if (!Number.isNaN(n)) byTime.set(t, Math.max(n, byTime.get(t) ?? -Infinity));
          }
        }
        const points = [...byTime.entries()].sort(([a], [b]) => a - b).map(([t, value]) => ({ at: new Date(t * 1000).toISOString(), value }));
        return points.length ? { ...base, points } : { ...base, missing: "Prometheus has no samples for this range" };
      } catch (err) {
        const e = err as Error;
        const why = String(e.cause instanceof Error ? e.cause.message : e.message);
        warnings.push(`${rule.name}: could not query ${policy.prometheus}: ${why}`);
        return { ...base, missing: why };
      }
    }),
  );
}
