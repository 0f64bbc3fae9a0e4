/**
 * Whether `watch --auto-rollback` may roll back by itself when a trigger fires, decided from plain values
 * (the stack's history, who holds the stack, the clock, the policy's guards). Nobody is awake to judge an
 * unattended rollback: when the facts say it could make things worse, it pages a person instead. Pure.
 */
import { HistoryEntry, liveState } from "../records/history-record";

/** The policy's guards (`policy.triggers.autoRollback`), defaults filled in. */
export interface AutoRollbackGuards {
  /** The newest apply must have ended less than this long ago (ms); an older change is not rolled back. */
  maxChangeAgeMs: number;
  /** Automatic rollbacks `watch` may start in any `windowMs`; the next one pages instead. */
  maxRollbacks: number;
  windowMs: number;
}

/** What holds the stack right now: an operation's in-flight mark or Pulumi's lock, not proven gone. */
export interface StackHolder {
  /** What it is doing, as its mark names it (`stackpin deploy v2 -> v3 by alice`), or `Pulumi's lock`. */
  what: string;
  /** Whose it is and why it counts as running (`pid 123 on host is running`). */
  detail: string;
}

/** Everything the decision reads. */
export interface AutoRollbackFacts {
  /** The stack's whole history, newest first. */
  history: HistoryEntry[];
  /** Where the rollback would go: the last version that verified, other than the live one. */
  rollbackTo?: string;
  /** Set when another operation holds the stack. */
  heldBy?: StackHolder;
  /** Now, in ms since the epoch. */
  now: number;
  guards: AutoRollbackGuards;
}

/** Why a fired trigger pages instead of rolling back. */
export type WithheldBy = "no-target" | "failed-rollback" | "automatic-rollback-live" | "stale-change" | "rollback-limit";

/** What watch does about a fired trigger. */
export type AutoRollbackDecision =
  | { action: "roll-back"; from?: string; to: string }
  /** Not now: evaluate again, and act once the stack is free if the trigger still holds. */
  | { action: "defer"; reason: string }
  /** Not at all: tell a person, with the reason. */
  | { action: "page"; guard: WithheldBy; reason: string };

/** How the reason of a rollback `watch` started begins (`trigger: <rule>: <detail>`). */
export const watchRollbackReason = "trigger: ";
/** How the reason of the rollback `deploy --auto-rollback` started after a failed deploy begins. */
export const deployRollbackReason = "auto-rollback: ";

/** True for a rollback that `watch` started on a trigger. */
export function isWatchRollback(h: HistoryEntry): boolean {
  return h.op === "rollback" && !!h.reason?.startsWith(watchRollbackReason);
}

/** True for a rollback nobody asked for by hand: one `watch` or `deploy --auto-rollback` started. */
export function isAutomaticRollback(h: HistoryEntry): boolean {
  return isWatchRollback(h) || (h.op === "rollback" && !!h.reason?.startsWith(deployRollbackReason));
}

/** The operations that apply a version: what a rollback undoes. */
const applyOps = ["deploy", "rollback", "restore", "update"];

/** A duration for people: `250 ms`, `42 s`, `60 min`. */
const span = (ms: number): string => (ms < 1000 ? `${Math.round(ms)} ms` : ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`);

function describe(h: HistoryEntry): string {
  return `${h.op} ${h.from ? `${h.from} -> ` : ""}${h.to ?? "(no version)"} (revision ${h.revision})`;
}

/**
 * Decides, in this order:
 * 1. another operation holds the stack, or the newest update has not ended: defer;
 * 2. nothing verified to go back to: page;
 * 3. the newest update is a rollback that failed (its apply or its verification): page, never a rollback
 *    of a failed rollback;
 * 4. the live version was put there by an automatic rollback, and the trigger fires on it: page;
 * 5. the newest apply ended more than `maxChangeAgeMs` ago: page, the failure is not the change's;
 * 6. `watch` started `maxRollbacks` rollbacks (any outcome) in the last `windowMs`: page;
 * otherwise roll back. Every count is read from the history, so two watches, or one restarted, agree.
 */
export function decideAutoRollback(facts: AutoRollbackFacts): AutoRollbackDecision {
  const { history, rollbackTo, heldBy, now, guards } = facts;
  const newest = history[0];
  if (heldBy) return { action: "defer", reason: `another operation holds the stack: ${heldBy.what} (${heldBy.detail})` };
  if (newest && newest.result !== "succeeded" && newest.result !== "failed") {
    return { action: "defer", reason: `the newest update, ${describe(newest)}, has not ended (${newest.result})` };
  }
  if (!rollbackTo) return { action: "page", guard: "no-target", reason: "no verified version to roll back to" };
  if (newest?.op === "rollback" && (newest.result === "failed" || newest.verification?.startsWith("failed"))) {
    const why = newest.result === "failed" ? "its update failed" : `its verification ${newest.verification}`;
    return { action: "page", guard: "failed-rollback", reason: `the newest update, ${describe(newest)}, is a rollback that failed (${why}): a failed rollback is never rolled back automatically` };
  }
  const live = liveState(history);
  const liveEntry = history.find((h) => h.revision === live.revision);
  if (liveEntry && isAutomaticRollback(liveEntry)) {
    return {
      action: "page",
      guard: "automatic-rollback-live",
      reason: `${live.version} was put live by an automatic rollback, ${describe(liveEntry)} ("${liveEntry.reason}"), and the trigger fires on it too: the fault is likely not the release`,
    };
  }
  const change = history.find((h) => applyOps.includes(h.op) && (h.result === "succeeded" || h.result === "failed"));
  if (change) {
    const ended = Date.parse(change.finishedAt ?? change.startedAt);
    const age = now - ended;
    if (age > guards.maxChangeAgeMs) {
      return {
        action: "page",
        guard: "stale-change",
        reason: `the newest change, ${describe(change)}, ended ${span(age)} ago, more than policy.triggers.autoRollback.maxChangeAgeMs (${span(guards.maxChangeAgeMs)}): a failure this long after a change is not rolled back automatically`,
      };
    }
  }
  if (guards.maxRollbacks === 0) {
    return { action: "page", guard: "rollback-limit", reason: "policy.triggers.autoRollback.maxRollbacks is 0: watch never rolls back by itself" };
  }
  const recent = history.filter((h) => isWatchRollback(h) && now - Date.parse(h.startedAt) < guards.windowMs);
  if (recent.length >= guards.maxRollbacks) {
    return {
      action: "page",
      guard: "rollback-limit",
      reason:
        `${recent.length} automatic rollback(s) in the last ${span(guards.windowMs)} (revision ${recent.map((h) => h.revision).join(", ")}), ` +
        `the most policy.triggers.autoRollback allows (maxRollbacks ${guards.maxRollbacks} per windowMs ${span(guards.windowMs)})`,
    };
  }
  // After a failed apply the stack may be partly at that version: that is what the rollback goes back from.
  return { action: "roll-back", from: live.failed?.to ?? live.version, to: rollbackTo };
}
