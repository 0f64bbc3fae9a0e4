/**
 * Rollback readiness as data: which versions a stack could go back to, what each way back needs (its
 * legs), and what a change between two readings means for people. Everything here is pure: the check
 * that reads the world (`lib/operations/check.ts`) hands it what it found.
 */
import { HistoryEntry, lastGoodVersion, liveState, previousVersion } from "../records/history-record";

/** What a way back needs, each checked on its own. */
export type LegName = "config" | "secrets" | "artifacts" | "database" | "generations" | "plugins" | "approvals" | "freeze" | "engine";

/** The legs in the order they are shown. */
export const legOrder: readonly LegName[] = ["config", "secrets", "artifacts", "database", "generations", "plugins", "approvals", "freeze", "engine"];

/** One leg: whether it holds (`ok`), or was not checked because an earlier leg failed (`ok: undefined`), and why. */
export interface Leg {
  leg: LegName;
  ok: boolean | undefined;
  detail: string;
}

/** Whether a rollback to one version can be done now, and how. */
export interface TargetReadiness {
  version: string;
  /** Why it was checked: `last good`, `previous`, `asked`, `applied before`. */
  as: string[];
  ready: boolean;
  legs: Leg[];
  /** The database's restore window seen, when the way back restores it (ISO times). */
  window?: { from: string; to: string };
  checkedAt: string;
  durationMs: number;
}

/** A check's whole answer for a stack. */
export interface ReadinessReport {
  stack: string;
  /** The live version and revision the check was made against. */
  live?: string;
  revision: number;
  checkedAt: string;
  targets: TargetReadiness[];
  /** Every target asked is ready. */
  ready: boolean;
}

/** A version to check and why. */
export interface Candidate {
  version: string;
  as: string[];
}

/**
 * The versions a check looks at, from the history: one asked for; every version applied successfully
 * before (`all`); or by default the last good version (the newest that verified, where `watch` rolls
 * back to) and the previous one. The live version is never its own way back.
 */
export function candidatesOf(history: HistoryEntry[], ask: { to?: string; all?: boolean } = {}): Candidate[] {
  const live = liveState(history);
  const out: Candidate[] = [];
  const add = (version: string | undefined, as: string) => {
    if (!version) return;
    const seen = out.find((c) => c.version === version);
    if (seen) seen.as.push(as);
    else out.push({ version, as: [as] });
  };
  if (ask.to) {
    add(ask.to, "asked");
    return out;
  }
  const liveVersion = live.failed ? undefined : live.version;
  add(lastGoodVersion(history, liveVersion), "last good");
  const previous = previousVersion(history);
  if (previous !== liveVersion) add(previous, "previous");
  if (ask.all) {
    for (const e of history) {
      if ((e.op === "deploy" || e.op === "rollback") && e.result === "succeeded" && e.to && e.to !== liveVersion && !out.some((c) => c.version === e.to)) add(e.to, "applied before");
    }
  }
  return out;
}

/** A target is ready when every leg holds; a leg left unchecked counts as not holding. */
export function targetReadiness(c: Candidate, legs: Leg[], at: { checkedAt: string; durationMs: number }, window?: TargetReadiness["window"]): TargetReadiness {
  const sorted = [...legs].sort((a, b) => legOrder.indexOf(a.leg) - legOrder.indexOf(b.leg));
  return { version: c.version, as: c.as, ready: sorted.every((l) => l.ok === true), legs: sorted, ...(window ? { window } : {}), checkedAt: at.checkedAt, durationMs: at.durationMs };
}

/** "6 h 12 min", "3 min", "45 s": a span for people. */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** The first leg that does not hold: what a one-line answer names. */
export function firstBroken(t: TargetReadiness): Leg | undefined {
  return t.legs.find((l) => l.ok === false) ?? t.legs.find((l) => l.ok === undefined);
}

/**
 * One line per target, as `status` and `check` show it: `rollback to v41: ready — restore window 6 h 12 min`
 * or `rollback to v41: NOT READY — database: WAL segment … is in no WAL archive`.
 */
export function readinessLine(t: TargetReadiness): string {
  if (!t.ready) {
    const leg = firstBroken(t);
    return `rollback to ${t.version}: NOT READY — ${leg ? `${leg.leg}: ${leg.detail}` : "not checked"}`;
  }
  const database = t.legs.find((l) => l.leg === "database");
  const how = t.window
    ? `restore window ${span(Date.parse(t.window.to) - Date.parse(t.window.from))}`
    : database && database.detail
      ? database.detail
      : "nothing in the way";
  return `rollback to ${t.version}: ready — ${how}`;
}

/** A way back that broke or came back between two readings. */
export interface ReadinessChange {
  version: string;
  change: "broken" | "restored";
  /** The leg that broke (for `broken`), and its reason. */
  leg?: LegName;
  detail: string;
}

/**
 * What changed between the previous reading and this one, for a webhook: a target that was ready and is
 * not (or was never read and is not), and one that was not ready and is again. A target read for the
 * first time and ready is no news.
 */
export function readinessChanges(before: TargetReadiness[] | undefined, after: TargetReadiness[]): ReadinessChange[] {
  const changes: ReadinessChange[] = [];
  for (const t of after) {
    const was = before?.find((b) => b.version === t.version);
    if (!t.ready && (!was || was.ready)) {
      const leg = firstBroken(t);
      changes.push({ version: t.version, change: "broken", ...(leg ? { leg: leg.leg } : {}), detail: leg ? `${leg.leg}: ${leg.detail}` : "not checked" });
    } else if (t.ready && was && !was.ready) {
      changes.push({ version: t.version, change: "restored", detail: readinessLine(t) });
    }
  }
  return changes;
}

/** Which leg an error raised while planning or previewing a rollback belongs to, by its code. */
export function legOfFailure(code: string): LegName {
  switch (code) {
    case "unknown-version":
    case "invalid-version-file":
    case "stack-not-deployed":
      return "config";
    case "missing-passphrase":
    case "wrong-passphrase":
    case "secrets-provider-unavailable":
      return "secrets";
    case "restore-impossible":
    case "database-unavailable":
      return "database";
    case "approval-required":
    case "cannot-approve":
      return "approvals";
    default:
      return "engine";
  }
}
