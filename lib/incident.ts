import * as fs from "node:fs";
import * as path from "node:path";
import type { NotificationResult } from "./notify";
import type { Plan } from "./operations/plan";
import type { VerificationResult } from "./verification";

/** One step of a rollback, as it happened. */
export interface TimelineEntry {
  at: string;
  step: string;
  detail?: string;
}

/** The incident record every rollback writes: what happened, when, why, and what was checked. */
export interface IncidentRecord {
  id: string;
  stack: string;
  from?: string;
  to: string;
  actor: string;
  reason?: string;
  trigger?: { rule: string; detail: string; breachedAt: string; firedAt: string };
  /** Milliseconds from the breach to the start of the rollback, when a trigger started it. */
  breachToRollbackMs?: number;
  startedAt: string;
  endedAt?: string;
  result?: string;
  revision?: number;
  approvals: string[];
  diff?: { config: Array<{ key: string; kind: string }>; resources: Array<{ op: string; name: string }>; warnings: string[] };
  verification?: VerificationResult;
  notifications: NotificationResult[];
  timeline: TimelineEntry[];
}

/** Collects a rollback's timeline and writes the record as JSON and as the start of a post-mortem. */
export class IncidentRecorder {
  readonly record: IncidentRecord;

  constructor(init: Pick<IncidentRecord, "stack" | "to" | "actor"> & Partial<IncidentRecord>) {
    const startedAt = new Date().toISOString();
    this.record = {
      id: `${startedAt.replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}-${init.stack}-${init.to}`,
      startedAt,
      approvals: [],
      notifications: [],
      timeline: [],
      ...init,
    };
  }

  step(step: string, detail?: string): void {
    this.record.timeline.push({ at: new Date().toISOString(), step, detail });
  }

  /** Records the plan's diff summary (keys and resources only: values, secrets included, stay out). */
  diff(plan: Plan): void {
    this.record.diff = {
      config: plan.configChanges.map((c) => ({ key: c.key, kind: c.kind })),
      resources: plan.resourceChanges.map((r) => ({ op: r.op, name: r.name })),
      warnings: plan.warnings,
    };
  }

  /** Writes `<id>.json` and `<id>.md` into `dir`; returns their paths. */
  write(dir: string): { json: string; markdown: string } {
    fs.mkdirSync(dir, { recursive: true });
    const json = path.join(dir, `${this.record.id}.json`);
    const markdown = path.join(dir, `${this.record.id}.md`);
    fs.writeFileSync(json, `${JSON.stringify(this.record, null, 2)}\n`);
    fs.writeFileSync(markdown, renderMarkdown(this.record));
    return { json, markdown };
  }
}

/** The incident as Markdown: the facts first, then the headings a post-mortem fills in. */
export function renderMarkdown(r: IncidentRecord): string {
  const lines = [
    `# Incident: rollback of ${r.stack} from ${r.from ?? "(none)"} to ${r.to}`,
    "",
    "| | |",
    "| --- | --- |",
    `| Environment | ${r.stack} |`,
    `| Rolled back | ${r.from ?? "(none)"} -> ${r.to} |`,
    `| Started | ${r.startedAt} |`,
    `| Ended | ${r.endedAt ?? "(unfinished)"} |`,
    `| Result | ${r.result ?? "(unfinished)"} |`,
    `| By | ${r.actor} |`,
    `| Reason | ${r.reason ?? "(none given)"} |`,
    `| Trigger | ${r.trigger ? `${r.trigger.rule}: ${r.trigger.detail}` : "manual"} |`,
    ...(r.breachToRollbackMs !== undefined ? [`| Breach to rollback start | ${(r.breachToRollbackMs / 1000).toFixed(1)} s |`] : []),
    `| Approvals | ${r.approvals.join(", ") || "(none needed)"} |`,
    "",
    "## Timeline (UTC)",
    "",
    ...r.timeline.map((t) => `- ${t.at.slice(11, 23)} ${t.step}${t.detail ? ` — ${t.detail}` : ""}`),
    "",
    "## What changed",
    "",
    ...(r.diff
      ? [
          ...r.diff.config.map((c) => `- config ${c.kind}: \`${c.key}\``),
          ...r.diff.resources.map((c) => `- ${c.op}: ${c.name}`),
          ...r.diff.warnings.map((w) => `- warning: ${w}`),
        ]
      : ["- (no plan recorded)"]),
    "",
    "## Verification",
    "",
    ...(r.verification
      ? [`${r.verification.passed ? "Passed" : `FAILED: ${r.verification.reason}`}`, "", ...r.verification.checks.map((c) => `- ${c.passed ? "✓" : "✗"} ${c.name}: ${c.detail}`)]
      : ["(none ran)"]),
    "",
    "## Notifications",
    "",
    ...(r.notifications.length ? r.notifications.map((n) => `- ${n.event} to ${n.url}: ${n.ok ? "delivered" : `FAILED (${n.error})`}`) : ["(none configured)"]),
    "",
    "## Impact",
    "",
    "_Who was affected, how, for how long._",
    "",
    "## Root cause",
    "",
    "_Why the release misbehaved._",
    "",
    "## Action items",
    "",
    "- [ ] _..._",
    "",
  ];
  return lines.join("\n");
}
