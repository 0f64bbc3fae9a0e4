import Table from "cli-table3";
import pc from "picocolors";
import type { HistoryEntry } from "../records/history-record";
import type { ApplyResult } from "../operations/apply";
import type { ApproveResult } from "../operations/approve";
import type { DestroyResult } from "../operations/destroy";
import type { FleetPreview, FleetResult } from "../operations/fleet";
import type { Plan } from "../operations/plan";
import type { Status } from "../operations/status";
import type { AuditEntry } from "../records/audit";
import type { RecoveryReport } from "../operations/recover";
import type { RollbackResult } from "../operations/rollback";
import type { Evaluation } from "../incident/triggers";
import type { VerificationResult } from "../verify/verification";
import type { ConfigChange } from "../versions/config-diff";
import { readinessLine, ReadinessReport, span } from "../planning/readiness";
import { opColour } from "./progress";

export { renderProgress } from "./progress";

// Borders stay uncoloured so piped output and logs hold no escape codes.
const tableStyle = { head: [] as string[], border: [] as string[] };

function show(value: unknown): string {
  return value === undefined ? "" : typeof value === "string" ? value : JSON.stringify(value);
}

function configTable(changes: ConfigChange[]): string {
  if (changes.length === 0) return "  (no config changes)";
  const table = new Table({ head: ["", "key", "live", "target"], style: tableStyle });
  const sign = { added: pc.green("+"), removed: pc.red("-"), changed: pc.yellow("~") };
  for (const c of changes) table.push([sign[c.kind], c.key, show(c.before), show(c.after)]);
  return table.toString();
}

/** A plan for people: what changes, in config and in resources, and what to read first. */
export function renderPlan(plan: Plan): string {
  const lines = [
    pc.bold(`${plan.op} ${plan.from ?? "(nothing live)"} -> ${plan.to} on stack ${plan.stack}`) +
      (plan.description ? `  ${pc.dim(plan.description)}` : ""),
    "",
    pc.bold("config"),
    configTable(plan.configChanges),
    "",
    pc.bold("resources"),
  ];
  if (plan.resourceChanges.length === 0) lines.push("  (no resource changes)");
  for (const s of plan.resourceChanges) {
    const colour = opColour[s.op] ?? ((x: string) => x);
    const keys = s.diffKeys.length ? `  [${s.diffKeys.join(", ")}]` : "";
    lines.push(`  ${colour(s.op.padEnd(18))} ${s.name} ${pc.dim(s.type)}${keys}`);
  }
  const counts = Object.entries(plan.changeSummary).map(([k, v]) => `${v} ${k}`).join(", ");
  lines.push("", `  ${counts || "no resources"}`, "", pc.bold("what happens"));
  for (const n of plan.notes) lines.push(`  - ${n}`);
  if (plan.database) {
    const d = plan.database;
    lines.push(`  - database: ${d.policy}, schema ${d.schemaBefore} -> ${d.schemaAfter}`);
    if (d.dataLossWindow) lines.push(pc.red(`  ! data written from ${d.dataLossWindow.from} to ${d.dataLossWindow.to} (now) is lost`));
  }
  for (const d of plan.dataAtRisk) lines.push(pc.red(`  ! deletes ${d.label} in ${d.where}: its data is gone`));
  for (const w of [...new Set(plan.warnings)]) lines.push(pc.yellow(`  ! ${w}`));
  lines.push("", `plan digest: ${plan.planDigest} (at revision ${plan.baseRevision}; an approval signs this)`);
  return lines.join("\n");
}

/** A written approval: what it approves, until when, and where it is. */
export function renderApproval(r: ApproveResult): string {
  const s = r.statement;
  const lines = [
    pc.green(`${s.approver} approved ${s.operation} ${s.from ? `${s.from} -> ` : ""}${s.to} on stack ${s.stack}`) + ` (approval ${s.id})`,
    `  plan ${s.planDigest}, at revision ${s.baseRevision}`,
    `  valid until ${s.expiresAt}, for one apply`,
    `  written to ${r.file}`,
    `  pass it on: stackpin ${s.operation} --stack ${s.stack} ${s.operation === "restore" ? "..." : s.operation === "deploy" ? `--version ${s.to}` : `--to ${s.to}`} --approval-file ${r.file}`,
  ];
  const source = (by: string) => (by === "machine" ? `machine policy ${r.machinePolicy}` : `stack ${s.stack}'s policy`);
  if (r.requirements.length) lines.push(`  required here: ${r.requirements.map((q) => `${q.category} (by ${q.by.map(source).join(" and ")})`).join(", ")}`);
  else lines.push(pc.yellow(`  ! stack ${s.stack}'s policy does not require an approval for this ${s.operation}${r.machinePolicy ? `, nor does ${source("machine")}` : ""}`));
  return lines.join("\n");
}

/** The outcome of a deploy or rollback. */
export function renderApply(result: ApplyResult): string {
  const counts = Object.entries(result.changeSummary).map(([k, v]) => `${v} ${k}`).join(", ");
  const lines = [
    pc.green(`${result.op} ${result.from ?? "(nothing)"} -> ${result.to} on stack ${result.stack}: done`) +
      ` (revision ${result.revision}, ${(result.durationMs / 1000).toFixed(1)} s; ${counts})`,
  ];
  if (result.database) {
    lines.push(`  database: ${result.database.policy}, schema ${result.database.schema}`);
    for (const n of result.database.notes) lines.push(`    - ${n}`);
    for (const w of result.database.warnings) lines.push(pc.yellow(`    ! ${w}`));
  }
  if (result.verification) lines.push(...renderVerification(result.verification));
  for (const [k, o] of Object.entries(result.outputs)) lines.push(`  ${k}: ${show(o.value)}`);
  return lines.join("\n");
}

/** A rollback's outcome, with what was recorded and told around it. */
export function renderRollback(r: RollbackResult): string {
  if (r.skipped) return `${r.skipped}; nothing was applied or recorded (--force re-applies it)`;
  const lines = renderApply(r).split("\n");
  if (r.traffic) {
    const t = r.traffic;
    lines.splice(
      1,
      0,
      `  traffic: on the ${t.slot} slot (${t.version}) ${(t.movedMs / 1000).toFixed(2)} s after the rollback started${t.settledMs !== undefined ? `, every ready endpoint there at ${(t.settledMs / 1000).toFixed(2)} s` : ""}; recorded by the engine at ${((r.recordedMs ?? 0) / 1000).toFixed(1)} s`,
    );
  }
  if (r.approvals.length) lines.push(`  approved by: ${r.approvals.join("; ")}`);
  for (const n of r.notifications) lines.push(`  webhook ${n.event} -> ${n.url}: ${n.ok ? "delivered" : pc.yellow(`FAILED (${n.error})`)}`);
  if (r.incident) lines.push(`  incident record: ${r.incident.markdown}`);
  return lines.join("\n");
}

/** One line per watch evaluation. */
export function renderEvaluation(e: Evaluation): string {
  const parts = e.rules.map((r) => `${r.fired ? pc.red("FIRED") : r.breached ? pc.yellow("breach") : pc.green("ok")} ${r.name}: ${r.detail}`);
  return `${e.at.slice(11, 19)} ${parts.join(" | ")}`;
}

/** The audit trail as a table. */
export function renderAudit(entries: AuditEntry[]): string {
  if (entries.length === 0) return "the audit trail is empty";
  const table = new Table({ head: ["#", "when", "who", "op", "from", "to", "result", "detail"], style: tableStyle });
  for (const e of entries) table.push([e.seq, e.at.replace("T", " ").slice(0, 19), e.actor, e.op, e.from ?? "", e.to ?? "", e.result, clip(e.detail ?? "", 60)]);
  return table.toString();
}

/** Each verification check, passed or not. */
export function renderVerification(v: VerificationResult): string[] {
  return [
    v.passed ? pc.green(`  verified ${v.version} through ${v.endpoint}`) : pc.red(`  verification of ${v.version} FAILED: ${v.reason}`),
    ...v.checks.map((c) => `    ${c.passed ? pc.green("✓") : pc.red("✗")} ${c.name} (${c.attempts} attempt${c.attempts === 1 ? "" : "s"}, ${c.durationMs} ms): ${c.detail}`),
  ];
}

function clip(text: string, max: number): string {
  const line = text.replace(/\s+/g, " ");
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** History as a table, newest first, like `helm history`. */
export function renderHistory(stack: string, entries: HistoryEntry[]): string {
  if (entries.length === 0) return `stack ${stack} has no history yet`;
  const table = new Table({
    head: ["revision", "when", "op", "from", "to", "result", "verified", "who", "why"],
    style: tableStyle,
  });
  for (const e of entries) {
    const result = e.result === "succeeded" ? pc.green(e.result) : e.result === "failed" ? pc.red(e.result) : e.result;
    const verified = e.verification === undefined ? "" : e.verification === "passed" ? pc.green("passed") : pc.red("failed");
    table.push([e.revision, e.startedAt.replace("T", " ").slice(0, 19), e.op, e.from ?? "", e.to ?? "", result, verified, e.who ?? "", clip(e.reason ?? "", 60)]);
  }
  return table.toString();
}

/** Which version is live, and how it got there. */
export function renderStatus(s: Status): string {
  const lines = [pc.bold(`stack ${s.stack}: ${s.liveVersion ? `${s.liveVersion} live` : "no version live"}`)];
  if (s.freeze) lines.push(pc.red(`  DEPLOYS FROZEN since ${s.freeze.at} by ${s.freeze.by}: ${s.freeze.reason} (rollbacks allowed)`));
  if (s.revision !== undefined) lines.push(`  since revision ${s.revision}`);
  lines.push(`  last verified version: ${s.verifiedVersion ?? "(none)"}`);
  if (s.lastOperation) {
    const l = s.lastOperation;
    lines.push(`  last operation: ${l.op} ${l.from ? `${l.from} -> ` : ""}${l.to ?? ""} ${l.result} at ${l.startedAt}${l.who ? ` by ${l.who}` : ""}`);
  }
  if (s.failed) lines.push(pc.red(`  ! the last apply (${s.failed.to}, revision ${s.failed.revision}) failed; the stack may be partially updated`));
  lines.push(`  versions: ${s.versions.join(", ") || "(none)"}`);
  lines.push(...renderReadinessInStatus(s));
  for (const [k, o] of Object.entries(s.outputs)) lines.push(`  ${k}: ${show(o.value)}`);
  return lines.join("\n");
}

/** The ways back as the newest check found them, and how old that answer is; never presented as newer than it is. */
function renderReadinessInStatus(s: Status): string[] {
  const r = s.readiness;
  if (!r) return s.liveVersion ? [`  ways back: never checked (stackpin check --stack ${s.stack})`] : [];
  const age = span(Date.now() - Date.parse(r.checkedAt));
  const stale = s.lastOperation && s.lastOperation.revision !== r.revision ? `, before the newest update (revision ${s.lastOperation.revision}): re-run stackpin check` : "";
  return [
    `  ways back (checked ${age} ago at revision ${r.revision}${stale}):`,
    ...(r.targets.length ? r.targets.map((t) => `    ${t.ready ? "" : pc.red("! ")}${readinessLine(t)}`) : ["    (no version to roll back to)"]),
  ];
}

/** `check`'s answer: each way back with every leg, ✓ / ✗ / - (not checked), and its reason. */
export function renderReadiness(r: ReadinessReport): string {
  const mark = (ok: boolean | undefined) => (ok === true ? pc.green("✓") : ok === false ? pc.red("✗") : pc.dim("-"));
  const lines = [pc.bold(`ways back from ${r.live ?? "(nothing live)"} on ${r.stack} (revision ${r.revision}), checked at ${r.checkedAt}`)];
  if (!r.targets.length) lines.push("  no version to roll back to");
  for (const t of r.targets) {
    lines.push(`  ${t.ready ? pc.green(readinessLine(t)) : pc.red(readinessLine(t))} [${t.as.join(", ")}; ${(t.durationMs / 1000).toFixed(1)} s]`);
    for (const l of t.legs) lines.push(`    ${mark(l.ok)} ${l.leg}: ${l.detail}`);
  }
  return lines.join("\n");
}

/** What `destroy` removed, and the data it deleted or left in place (retained on delete). */
export function renderDestroy(r: DestroyResult): string {
  const lines = [`destroyed everything stack ${r.stack} owned (${(r.durationMs / 1000).toFixed(1)} s)`];
  const deleted = r.data.filter((d) => d.fate === "deleted").map((d) => d.label);
  if (deleted.length) lines.push(`  deleted: ${deleted.join(", ")}`);
  for (const where of [...new Set(r.data.filter((d) => d.fate === "retained").map((d) => d.where))]) {
    const kept = r.data.filter((d) => d.fate === "retained" && d.where === where).map((d) => d.label);
    lines.push(`  left in ${where}, with ${kept.length > 1 ? "their" : "its"} data (retained on delete; no stack manages ${kept.length > 1 ? "them" : "it"} now, delete ${kept.length > 1 ? "them" : "it"} there when you are sure): ${kept.join(", ")}`);
  }
  return lines.join("\n");
}

/** What `recover` found and did, or that there was nothing to recover. */
export function renderRecovery(r: RecoveryReport): string {
  if (!r.recovered) return `nothing to recover on stack ${r.stack}: no interrupted operation, nothing was changed`;
  const next = r.interrupted?.to && r.interrupted.op !== "update"
    ? `\nto finish it, re-run the ${r.interrupted.op}${r.interrupted.op === "destroy" ? `: stackpin destroy --stack ${r.stack} --yes` : ` to ${r.interrupted.to}`}`
    : "";
  return [`${r.summary} on stack ${r.stack}`, ...r.found.map((f) => `  found: ${f}`), ...r.actions.map((a) => `  done: ${a}`)].join("\n") + next;
}

const changeText = (changes?: Record<string, number>) =>
  changes ? Object.entries(changes).map(([k, v]) => `${v} ${k}`).join(", ") || "none" : "";

/** A fleet's previews, one row per stack, before anything changes. */
export function renderFleetPreview(previews: FleetPreview[]): string {
  const table = new Table({ head: ["wave", "stack", "from", "to", "resource changes", "warnings"], style: tableStyle });
  for (const p of previews) {
    table.push([p.wave, p.stack, p.from ?? "", p.to ?? "", p.error ? pc.red(`cannot preview (exit ${p.error.exitCode}): ${clip(p.error.message, 60)}`) : changeText(p.changes), clip(p.warnings.join("; "), 60)]);
  }
  return `${pc.bold("fleet rollback preview")}\n${table.toString()}`;
}

/** A fleet's outcome, one row per stack. */
export function renderFleet(r: FleetResult): string {
  const table = new Table({ head: ["wave", "stack", "from", "to", "result", "exit", "revision", "time"], style: tableStyle });
  const word = { succeeded: pc.green("succeeded"), failed: pc.red("FAILED"), halted: pc.yellow("halted") };
  for (const s of r.results) {
    const result = s.status === "failed" && s.error ? `${word.failed}: ${clip(s.error, 50)}` : s.status === "succeeded" && s.verified ? `${word.succeeded}, verified` : word[s.status];
    table.push([s.wave, s.stack, s.from ?? "", s.to ?? "", result, s.exitCode ?? "", s.revision ?? "", s.durationMs !== undefined ? `${(s.durationMs / 1000).toFixed(1)} s` : ""]);
  }
  const halt = r.haltedBy && r.halted ? `; halted after ${r.haltedBy} failed` : "";
  return `${table.toString()}\nfleet rollback to ${r.to}: ${r.succeeded} succeeded, ${r.failed} failed, ${r.halted} not started${halt} (${(r.durationMs / 1000).toFixed(1)} s)`;
}
