import { randomBytes } from "node:crypto";
import type { UpdateSummary } from "@pulumi/pulumi/automation";
import type { DatabasePlan } from "../planning/database";
import type { RolloutLayout } from "../planning/rollout";
import type { Generations } from "../planning/secret-generations";

/** What stackpin writes into each update's message, so the backend alone tells the story. */
export interface ApplyRecord {
  op: "deploy" | "rollback" | "restore" | "destroy";
  /** The version live before this apply (absent on a stack's first apply). */
  from?: string;
  to: string;
  who: string;
  /** Free text from `--message`, or why a rollback happened. */
  reason?: string;
  /** The signed approvals this apply used: kept in the backend so a replayed approval is named as one. */
  approvals?: UsedApproval[];
  /**
   * A random id for this update, written into its message: stackpin's records about the update (its
   * verification) are keyed by it, because a position in history is not stable.
   */
  id?: string;
}

/** A signed approval an apply used, by its id. */
export interface UsedApproval {
  id: string;
  approver: string;
}

const marker = "stackpin-record: ";

/** The update message: a line for people (`pulumi stack history` shows it), then the record as JSON. */
export function encodeRecord(record: ApplyRecord): string {
  const arrow = record.from ? `${record.from} -> ${record.to}` : record.to;
  const head = `stackpin ${record.op} ${arrow} by ${record.who}${record.reason ? `: ${record.reason}` : ""}`;
  return `${head.replace(/\s+/g, " ")}\n${marker}${JSON.stringify(record)}`;
}

/** The record in an update message, or undefined for updates stackpin did not make. */
export function decodeRecord(message: string | undefined): ApplyRecord | undefined {
  const line = message?.split("\n").find((l) => l.startsWith(marker));
  if (!line) return undefined;
  try {
    const r = JSON.parse(line.slice(marker.length)) as ApplyRecord;
    return r && typeof r.to === "string" && ["deploy", "rollback", "restore", "destroy"].includes(r.op) ? r : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The config an update ran with, as the backend recorded it: values as text (structured ones as JSON
 * too). A secret's value is absent (the CLI shows only that it was secret) or its ciphertext, never plain.
 */
export type RecordedConfig = Record<string, { value?: string; secret?: boolean; objectValue?: unknown }>;

/** One entry of a stack's history, newest first: every update in the backend, stackpin's or not. */
export interface HistoryEntry {
  /** Pulumi's update number for the stack; grows by one per update, like a Helm revision. */
  revision: number;
  /** `deploy` or `rollback` for stackpin's applies; Pulumi's kind (`refresh`, `destroy`, `update`) otherwise. */
  op: string;
  from?: string;
  /** The version the update applied, when known. */
  to?: string;
  who?: string;
  reason?: string;
  result: "succeeded" | "failed" | "in-progress" | string;
  startedAt: string;
  finishedAt?: string;
  resourceChanges: Record<string, number>;
  /** The blue/green layout this update applied (from its recorded config). */
  rollout?: RolloutLayout;
  /** The secret generations this update applied. */
  secretGenerations?: Generations;
  /** The database plan this update applied (schema, snapshots, restore). */
  database?: DatabasePlan;
  /** `passed`, or `failed: <reason>`, when stackpin verified this update. */
  verification?: string;
  /** The signed approvals this update used. */
  approvals?: UsedApproval[];
  /** The key stackpin's records use for this update: its record's id, else its start time (`updateKey`). */
  updateId?: string;
  /** True when the engine held the update to a previewed update plan (the plan confirmed before it). */
  heldToPlan?: boolean;
  /**
   * The config the update ran with (what a rollback to its version re-applies). Planning reads it; what
   * `history` and `status` show leaves it out (`withoutConfig`).
   */
  config?: RecordedConfig;
}

/** An entry as people and scripts see it: without the recorded config, which is for planning. */
export function withoutConfig(entry: HistoryEntry): HistoryEntry {
  const { config: _config, ...shown } = entry;
  return shown;
}

/** A config value stackpin wrote as JSON text, parsed; undefined when absent or not JSON. */
export function parseConfigJson<T>(value: string | undefined): T | undefined {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value) as T;
  } catch {
    return undefined;
  }
}

/** A new update id: 12 hex digits, short enough for a stack tag name on any backend. */
export function newUpdateId(): string {
  return randomBytes(6).toString("hex");
}

/** The stable key of an update: the id stackpin wrote into its record, or its start time for other updates. */
export function updateKey(u: UpdateSummary): string {
  return decodeRecord(u.message)?.id ?? `t${new Date(u.startTime).getTime() / 1000}`;
}

/** Verification outcomes to attach to history: by update key, and (from an older stackpin's tags) by revision. */
export interface VerificationLookup {
  verifications?: Record<string, { outcome: string }>;
  legacyVerifications?: Record<number, string>;
}

/** Turns the backend's update list into history entries, each with the config it ran with. */
export function toHistoryEntries(updates: UpdateSummary[], lookup: VerificationLookup = {}): HistoryEntry[] {
  return updates.map((u, i) => {
    const record = decodeRecord(u.message);
    const configured = u.config?.["stackpin:version"]?.value;
    // The file backend reports 0 for every update; the position in the full list is the same number.
    const revision = u.version > 0 ? u.version : updates.length - i;
    const updateId = updateKey(u);
    return {
      revision,
      op: record?.op ?? u.kind,
      from: record?.from,
      to: record?.op === "destroy" ? undefined : (record?.to ?? (u.kind === "update" ? configured : undefined)),
      who: record?.who,
      reason: record?.reason ?? (record ? undefined : u.message || undefined),
      result: u.result,
      startedAt: new Date(u.startTime).toISOString(),
      finishedAt: u.endTime ? new Date(u.endTime).toISOString() : undefined,
      resourceChanges: (u.resourceChanges ?? {}) as Record<string, number>,
      rollout: parseConfigJson<RolloutLayout>(u.config?.["stackpin:rollout"]?.value),
      secretGenerations: parseConfigJson<Generations>(u.config?.["stackpin:secrets"]?.value),
      database: parseConfigJson<DatabasePlan>(u.config?.["stackpin:database"]?.value),
      verification: lookup.verifications?.[updateId]?.outcome ?? lookup.legacyVerifications?.[revision],
      updateId,
      ...(u.environment?.updatePlan === "true" ? { heldToPlan: true } : {}),
      ...(record?.approvals ? { approvals: record.approvals } : {}),
      ...(u.config ? { config: u.config as RecordedConfig } : {}),
    };
  });
}

/** What history says is live: the version of the newest successful apply, and whether a later one failed. */
export interface LiveState {
  /** The version of the last successful update that applied one; undefined if none ever did or it was destroyed. */
  version?: string;
  revision?: number;
  /** The layout and secret generations that update applied. */
  rollout?: RolloutLayout;
  secretGenerations?: Generations;
  database?: DatabasePlan;
  /** The newest update, when it failed: the stack may be partially at `failed.to`. */
  failed?: HistoryEntry;
}

/** Reads the live version off history (newest first). A destroy ends the live version. */
export function liveState(history: HistoryEntry[]): LiveState {
  const state: LiveState = {};
  const newest = history[0];
  if (newest && newest.result === "failed" && newest.to) state.failed = newest;
  for (const h of history) {
    if (h.result !== "succeeded") continue;
    if (h.op === "destroy") return state;
    if (h.to && ["deploy", "rollback", "restore", "update"].includes(h.op)) {
      return {
        ...state,
        version: h.to,
        revision: h.revision,
        rollout: h.rollout,
        secretGenerations: h.secretGenerations,
        database: h.database,
      };
    }
  }
  return state;
}

/**
 * The version before the live one: the newest successfully applied version that differs from it and
 * that no later rollback moved away from (a version rolled back from is known bad, and `previous` must
 * never lead back to it; name it explicitly to re-apply it).
 */
export function previousVersion(history: HistoryEntry[]): string | undefined {
  const live = liveState(history).version;
  if (!live) return undefined;
  const rolledBackFrom = new Set<string>();
  for (const h of history) {
    if (h.op === "destroy" && h.result === "succeeded") return undefined;
    if (h.result === "succeeded" && h.to && h.to !== live && !rolledBackFrom.has(h.to)) return h.to;
    if (h.op === "rollback" && h.result === "succeeded" && h.from) rolledBackFrom.add(h.from);
  }
  return undefined;
}

/** The newest version whose apply succeeded and passed verification: where an auto-rollback goes. */
export function lastVerifiedVersion(history: HistoryEntry[], except?: string): string | undefined {
  return history.find((h) => h.result === "succeeded" && h.verification === "passed" && h.to && h.to !== except)?.to;
}

/**
 * The version to roll back to when the target fails: the last that verified; on a stack that never
 * verifies (its program exports no `endpoint`, e.g. Kubernetes without `publicUrl`, where readiness
 * probes gate the switch and the engine fails the apply when they never pass), the last applied one.
 */
export function lastGoodVersion(history: HistoryEntry[], except?: string): string | undefined {
  const verified = lastVerifiedVersion(history, except);
  // A successful apply that verified carries an outcome, passed or failed (stackpin's records; tags on older stacks).
  if (verified || history.some((h) => h.result === "succeeded" && h.verification !== undefined)) return verified;
  return history.find((h) => h.result === "succeeded" && ["deploy", "rollback", "restore"].includes(h.op) && h.to && h.to !== except)?.to;
}
