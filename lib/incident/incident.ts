import * as fs from "node:fs";
import * as path from "node:path";
import type { NotificationResult } from "./notify";
import type { Plan } from "../operations/plan";
import type { VerificationResult } from "../verify/verification";

/** One step of a rollback, as it happened. */
export interface TimelineEntry {
  at: string;
  step: string;
  detail?: string;
}

/**
 * The incident record every rollback writes: what happened, when, why, and what was checked. A trigger
 * whose automatic rollback `watch` deferred or withheld writes one too, with `withheld` and no rollback.
 */
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
  /**
   * What the signals read after the rollback, when `watch` waited for them (policy
   * `triggers.recoveryTimeoutMs`): whether every query rule came back within its bound, and the values.
   */
  recovery?: SignalRecovery;
  /**
   * Set when `watch --auto-rollback` did not roll back: the guard of the stack's policy that withheld it
   * (`no-target`, `failed-rollback`, `automatic-rollback-live`, `stale-change`, `rollback-limit`) and why.
   */
  withheld?: { guard: string; reason: string };
  /** The incident page `stackpin incident show --html` rendered, relative to the record's directory. */
  page?: { html: string; svg: string };
}

/** The signals after a rollback, as `watch` read them. */
export interface SignalRecovery {
  /** True when every query rule read a value within its bound. */
  recovered: boolean;
  /** When that was seen (or when watch stopped waiting). */
  at: string;
  /** Each query rule's last value and bound. */
  rules: Array<{ name: string; value?: number; threshold?: number; detail: string }>;
}

/**
 * Rewrites a written record (its `.json`, and the `.md` beside it from the result) after `change`: how
 * a later step (signals recovering, a page rendered) lands in the record of a rollback that already ended.
 */
export function updateIncident(jsonPath: string, change: (record: IncidentRecord) => void): IncidentRecord {
  const record = JSON.parse(fs.readFileSync(jsonPath, "utf8")) as IncidentRecord;
  change(record);
  fs.writeFileSync(jsonPath, `${JSON.stringify(record, null, 2)}\n`);
  fs.writeFileSync(jsonPath.replace(/\.json$/, ".md"), renderMarkdown(record));
  return record;
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
  // A record without a rollback: the trigger fired and watch's automatic rollback waited, or was withheld.
  const none = r.withheld !== undefined || (r.result ?? "").startsWith("deferred") || (r.result ?? "").startsWith("no rollback");
  const lines = [
    none
      ? `# Incident: trigger ${r.trigger ? `"${r.trigger.rule}" ` : ""}on ${r.stack} at ${r.from ?? "(none)"}, no automatic rollback`
      : `# Incident: rollback of ${r.stack} from ${r.from ?? "(none)"} to ${r.to}`,
    "",
    "| | |",
    "| --- | --- |",
    `| Environment | ${r.stack} |`,
    none ? `| Rolled back | no: ${r.withheld ? r.withheld.reason : (r.result ?? "(unfinished)")} (${r.from ?? "(none)"} live; the rollback would go to ${r.to}) |` : `| Rolled back | ${r.from ?? "(none)"} -> ${r.to} |`,
    `| Started | ${r.startedAt} |`,
    `| Ended | ${r.endedAt ?? "(unfinished)"} |`,
    `| Result | ${r.result ?? "(unfinished)"} |`,
    `| By | ${r.actor} |`,
    `| Reason | ${r.reason ?? "(none given)"} |`,
    `| Trigger | ${r.trigger ? `${r.trigger.rule}: ${r.trigger.detail}` : "manual"} |`,
    ...(r.breachToRollbackMs !== undefined ? [`| Breach to rollback start | ${(r.breachToRollbackMs / 1000).toFixed(1)} s |`] : []),
    `| Approvals | ${r.approvals.join(", ") || "(none needed)"} |`,
    ...(r.recovery
      ? [`| Signals after the rollback | ${r.recovery.recovered ? "back within every bound" : "STILL BREACHED"} at ${r.recovery.at}: ${r.recovery.rules.map((x) => `${x.name}: ${x.detail}`).join("; ")} |`]
      : []),
    ...(r.page ? [`| Timeline chart | [${r.page.html}](${r.page.html}) ([SVG](${r.page.svg})) |`] : []),
    "",
    ...(r.page ? [`![timeline of the incident: error rate and p99 with the deploy, breach, trigger, rollback and verification](${r.page.svg})`, ""] : []),
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
