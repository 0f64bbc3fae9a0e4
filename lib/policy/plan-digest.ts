/**
 * The digest of a plan: what an approver signs, so an approval covers one exact apply and nothing else.
 * It is the SHA-256 of a canonical JSON document (RFC 8785) holding the stack, the operation, the
 * versions, the history revision the plan was computed from, and the config stackpin would set (which
 * carries the rollout layout, the secret generations, the verification settings and the database plan).
 * Secret ciphertexts are replaced by their own hash, and words for people (notes, warnings, the data-loss
 * window ending "now") are left out, so the same world always gives the same digest.
 */
import * as crypto from "node:crypto";
import { canonicalize } from "json-canonicalize";
import { HistoryEntry, liveState } from "../records/history-record";
import type { StackSettingsConfigValue } from "@pulumi/pulumi/automation";

/** What a plan digest covers. */
export interface PlanDigestInput {
  stack: string;
  op: "deploy" | "rollback" | "restore";
  /** The live version the plan starts from (absent before the first apply). */
  from?: string;
  to: string;
  /** The newest history revision when the plan was computed: any later update makes it stale. */
  baseRevision: number;
  /** The config stackpin would set, as the planner computes it (`planDesiredState` in `planning/desired-state.ts`). */
  config: Record<string, StackSettingsConfigValue>;
}

const sha256 = (text: string) => crypto.createHash("sha256").update(text, "utf8").digest("hex");

/** Replaces every `{ secure: <ciphertext> }` by the ciphertext's hash, at any depth. */
function withoutCiphertext(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutCiphertext);
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 1 && entries[0][0] === "secure" && typeof entries[0][1] === "string") {
      return { secureSha256: sha256(entries[0][1]) };
    }
    return Object.fromEntries(entries.map(([k, v]) => [k, withoutCiphertext(v)]));
  }
  return value;
}

type RestoreLike = { name?: string; liveFrom?: string };

/**
 * The restore a plan creates takes over "now": its `liveFrom` is the planning time, not part of what is
 * approved. Restores already in the record keep theirs (they are history).
 */
function withoutPlanningTime(key: string, parsed: object): object {
  const db = parsed as { restore?: RestoreLike; restores?: RestoreLike[] };
  if (key !== "stackpin:database" || !db.restore?.name) return parsed;
  const strip = (r: RestoreLike) => (r.name === db.restore!.name ? { ...r, liveFrom: undefined } : r);
  return { ...db, restore: strip(db.restore), restores: db.restores?.map(strip) };
}

/** stackpin's own keys hold JSON text; parsed, their key order stops mattering. */
function structured(key: string, value: unknown): unknown {
  if (!key.startsWith("stackpin:") || typeof value !== "string") return value;
  try {
    const parsed: unknown = JSON.parse(value);
    return parsed !== null && typeof parsed === "object" ? { json: withoutPlanningTime(key, parsed) } : value;
  } catch {
    return value;
  }
}

/** The canonical document a plan digest hashes; exported so tests can show it holds no ciphertext. */
export function planDigestDocument(input: PlanDigestInput): string {
  const config = Object.fromEntries(Object.entries(input.config).map(([k, v]) => [k, structured(k, withoutCiphertext(v))]));
  return canonicalize({
    format: "stackpin-plan/1",
    stack: input.stack,
    op: input.op,
    from: input.from ?? null,
    to: input.to,
    baseRevision: input.baseRevision,
    config,
  });
}

/** `sha256:<hex>` of the plan: equal digests mean the same apply on the same world. */
export function planDigest(input: PlanDigestInput): string {
  return `sha256:${sha256(planDigestDocument(input))}`;
}

/** The newest revision in history (0 for a stack without one): the world a plan was computed in. */
export function baseRevisionOf(history: HistoryEntry[]): number {
  return history.reduce((max, h) => Math.max(max, h.revision), 0);
}

/** The digest of applying `desired` (computed for version `to`) after `history`, as preview and every operation compute it. */
export function planDigestFor(stack: string, op: PlanDigestInput["op"], to: string, history: HistoryEntry[], desired: { config: Record<string, StackSettingsConfigValue> }): { planDigest: string; baseRevision: number } {
  const baseRevision = baseRevisionOf(history);
  return { planDigest: planDigest({ stack, op, from: liveState(history).version, to, baseRevision, config: desired.config }), baseRevision };
}
