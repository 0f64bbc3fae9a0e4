import type { TopLevelSpec } from "vega-lite";
import type { IncidentRecord } from "./incident";

/** One moment of the incident drawn as a vertical mark. */
export interface IncidentMark {
  /** What happened, as the chart labels it: `deploy v2`, `breach`, `trigger`, `rollback start`, … */
  label: string;
  at: string;
}

/** One query rule's signal over the incident, from a Prometheus range query. */
export interface IncidentSeries {
  rule: string;
  query: string;
  /** The bound the rule compares with (absolute, or the multiple of its baseline), when known. */
  threshold?: number;
  points: Array<{ at: string; value: number }>;
  /** Why there are no points (Prometheus unreachable, retention passed), when there are none. */
  missing?: string;
}

/** The marks' colours, fixed so every page reads the same. */
const markColours: Record<string, string> = {
  deploy: "#1f77b4",
  breach: "#ff7f0e",
  trigger: "#d62728",
  "rollback start": "#9467bd",
  "rollback end": "#8c564b",
  "rollback deferred": "#bcbd22",
  "rollback withheld": "#7f7f7f",
  verification: "#2ca02c",
  recovered: "#17becf",
};

/** The kind of a mark, for its colour: `deploy v2` is a deploy. */
const kindOf = (label: string) => Object.keys(markColours).find((k) => label.startsWith(k)) ?? "deploy";

/**
 * The incident's timeline chart as a Vega-Lite spec: one panel per query rule, its value over time as a
 * line, its threshold as a dashed horizontal rule, and a labelled vertical rule for each mark.
 */
export function incidentChartSpec(record: IncidentRecord, series: IncidentSeries[], marks: IncidentMark[]): TopLevelSpec {
  // Labels in rows of their own (marks seconds apart would write over each other), in time order.
  const markValues = marks.map((m, i) => ({ ...m, kind: kindOf(m.label), labelY: 8 + (i % 8) * 13 }));
  const times = [...markValues.map((m) => Date.parse(m.at)), ...series.flatMap((s) => s.points.map((p) => Date.parse(p.at)))];
  const domain = [new Date(Math.min(...times)).toISOString(), new Date(Math.max(...times)).toISOString()];
  const x = { field: "at", type: "temporal" as const, title: "time (UTC)", scale: { domain }, axis: { format: "%H:%M:%S" } };
  // Layer names become Vega dataset and mark names: each panel needs its own.
  const panel = (s: IncidentSeries, n: number) => ({
    title: { text: `${s.rule}${s.missing ? ` (no data: ${s.missing})` : ""}`, anchor: "start" as const, fontSize: 13 },
    width: 820,
    height: 200,
    layer: [
      {
        name: `series_${n}`,
        data: { values: s.points.map((p) => ({ ...p, rule: s.rule })) },
        mark: { type: "line" as const, interpolate: "step-after" as const, strokeWidth: 2, color: "#333" },
        encoding: { x, y: { field: "value", type: "quantitative" as const, title: s.rule } },
      },
      ...(s.threshold !== undefined
        ? [
            {
              name: `threshold_${n}`,
              data: { values: [{ threshold: s.threshold, label: `threshold ${formatValue(s.threshold)}` }] },
              layer: [
                { mark: { type: "rule" as const, color: "#d62728", strokeDash: [6, 4] }, encoding: { y: { field: "threshold", type: "quantitative" as const } } },
                {
                  mark: { type: "text" as const, align: "right" as const, dy: -6, x: "width" as const, color: "#d62728" },
                  encoding: { y: { field: "threshold", type: "quantitative" as const }, text: { field: "label" } },
                },
              ],
            },
          ]
        : []),
      {
        name: `timeline_${n}`,
        data: { values: markValues },
        layer: [
          {
            mark: { type: "rule" as const, strokeWidth: 1.5 },
            encoding: {
              x,
              color: { field: "kind", type: "nominal" as const, scale: { domain: Object.keys(markColours), range: Object.values(markColours) }, legend: null },
            },
          },
          {
            mark: { type: "text" as const, align: "left" as const, baseline: "middle" as const, dx: 3, fontSize: 10, fontWeight: "bold" as const },
            encoding: {
              x,
              y: { field: "labelY", type: "quantitative" as const, scale: null },
              text: { field: "label" },
              color: { field: "kind", type: "nominal" as const, scale: { domain: Object.keys(markColours), range: Object.values(markColours) }, legend: null },
            },
          },
        ],
      },
    ],
  });
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: { text: `Incident ${record.id}: ${record.stack} ${record.from ?? "(none)"} -> ${record.to}`, anchor: "start", fontSize: 15 },
    background: "white",
    padding: 12,
    vconcat: series.map(panel),
    resolve: { scale: { color: "shared" } },
  } as TopLevelSpec;
}

/** Compiles the Vega-Lite spec and renders it to SVG in this process (no browser, no canvas). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // Vega is about 40 modules: loaded here, by the one command that draws, not at every command's start.
  const vega = require("vega") as typeof import("vega");
  const vegaLite = require("vega-lite") as typeof import("vega-lite");
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

function formatValue(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(3)).toString();
}

/**
 * The incident page: what happened in one table, the chart (inline SVG, also written beside the page),
 * the marks with their times, and the Vega-Lite spec it was drawn from (`script#vega-lite-spec`).
 */
export function renderIncidentHtml(record: IncidentRecord, svg: string, spec: TopLevelSpec, marks: IncidentMark[], series: IncidentSeries[], links: { markdown: string; svg: string }): string {
  const rows: Array<[string, string]> = [
    ["Environment", record.stack],
    ["Rolled back", record.withheld ? `no: ${record.withheld.reason} (${record.from ?? "(none)"} live; the rollback would go to ${record.to})` : `${record.from ?? "(none)"} -> ${record.to}`],
    ["Trigger", record.trigger ? `${record.trigger.rule}: ${record.trigger.detail}` : "manual"],
    ["Breach to rollback start", record.breachToRollbackMs !== undefined ? `${(record.breachToRollbackMs / 1000).toFixed(1)} s` : "-"],
    ["Result", record.result ?? "(unfinished)"],
    ["Signals after the rollback", record.recovery ? `${record.recovery.recovered ? "back within every bound" : "STILL BREACHED"} at ${record.recovery.at}` : "(not watched)"],
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Incident ${escape(record.id)}</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
  table { border-collapse: collapse; margin: 12px 0; }
  td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
  figure { margin: 16px 0; }
  .legend span { display: inline-block; margin-right: 14px; }
  .legend i { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin-right: 4px; }
</style>
</head>
<body>
<h1>${
    record.withheld
      ? `Incident: trigger on ${escape(record.stack)} at ${escape(record.from ?? "(none)")}, no automatic rollback`
      : `Incident: rollback of ${escape(record.stack)} from ${escape(record.from ?? "(none)")} to ${escape(record.to)}`
  }</h1>
<table>
${rows.map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v)}</td></tr>`).join("\n")}
</table>
<p class="legend">${Object.entries(markColours)
    .map(([k, c]) => `<span><i style="background:${c}"></i>${escape(k)}</span>`)
    .join("")}<span><i style="background:#d62728;height:0;border-top:2px dashed #d62728"></i>threshold</span></p>
<figure id="chart">
${svg}
<figcaption>Each panel is one trigger rule's query over the incident (Prometheus range queries, one point per step); the dashed line is the rule's threshold; vertical lines mark the timeline below. <a href="${escape(links.svg)}">SVG</a> · <a href="${escape(links.markdown)}">post-mortem (Markdown)</a></figcaption>
</figure>
<h2>Timeline (UTC)</h2>
<ul id="marks">
${marks.map((m) => `<li data-mark="${escape(m.label)}">${escape(m.at)} <b>${escape(m.label)}</b></li>`).join("\n")}
</ul>
<h2>Signals</h2>
<ul id="series">
${series.map((s) => `<li data-rule="${escape(s.rule)}" data-points="${s.points.length}"><b>${escape(s.rule)}</b>: <code>${escape(s.query)}</code>${s.threshold !== undefined ? `, threshold ${formatValue(s.threshold)}` : ""}${s.missing ? ` (no data: ${escape(s.missing)})` : `, ${s.points.length} points`}</li>`).join("\n")}
</ul>
<script type="application/json" id="vega-lite-spec">${JSON.stringify(spec).replace(/</g, "\\u003c")}</script>
</body>
</html>
`;
}
