/**
 * Whether the holder of an in-flight mark or a backend lock is gone, judged as a lease rather than by a
 * process id alone. A running operation renews its mark on a heartbeat; a holder is gone when its lease
 * has expired, or — on its own machine, proven by hostname, boot id and pid namespace together — when its
 * process is gone. A fresh lease held from another machine (or another pid namespace on this one) is
 * never judged gone: only its expiry can say so. Pure: the facts of this machine are passed in.
 */

/** Where a holder ran: enough to tell whether a pid seen here is its pid. */
export interface HolderPlace {
  hostname: string;
  /** `/proc/sys/kernel/random/boot_id` when it took the mark: a reboot (or another kernel) changes it. */
  bootId?: string;
  /** The inode of `/proc/self/ns/pid`: two containers sharing a hostname differ here. */
  pidNs?: string;
}

/** A holder as recorded in its mark: who, where, since when, and its lease. */
export interface LeaseHolder extends HolderPlace {
  pid: number;
  /** When it took the mark (ISO 8601). */
  since: string;
  /** When it last renewed the mark (ISO 8601); absent for a holder that never renews (an older stackpin). */
  renewedAt?: string;
  /** How long a renewal holds, in milliseconds. */
  ttlMs?: number;
}

/** What this machine knows when judging. */
export interface LocalFacts extends HolderPlace {
  /** Now, in milliseconds since the epoch. */
  now: number;
  /** Whether `pid` runs here as the holder (not a reused pid): from /proc, as `livenessOf` proves it. */
  processState: (pid: number) => "alive" | "dead" | "unknown";
}

/** The judgement: `gone` only with proof; `held` with when the lease ends, when known. */
export type LeaseState =
  | { state: "gone"; detail: string }
  | { state: "held"; detail: string; expiresAt?: string }
  | { state: "unknown"; detail: string };

/** True when the holder ran on this very machine and pid namespace, so a pid seen here is its pid. */
export function samePlace(holder: HolderPlace, here: HolderPlace): boolean {
  if (holder.hostname !== here.hostname) return false;
  // Recorded on both sides, they must match; a holder that did not record them is judged by hostname alone
  // only when this machine cannot tell either (an older mark, read by an older-style host).
  if (holder.bootId !== undefined || here.bootId !== undefined) {
    if (holder.bootId === undefined || here.bootId === undefined || holder.bootId !== here.bootId) return false;
  }
  if (holder.pidNs !== undefined || here.pidNs !== undefined) {
    if (holder.pidNs === undefined || here.pidNs === undefined || holder.pidNs !== here.pidNs) return false;
  }
  return true;
}

/** When the holder's lease ends (ms since the epoch), or undefined when it holds none. */
export function leaseEnd(holder: LeaseHolder): number | undefined {
  if (holder.ttlMs === undefined || !(holder.ttlMs > 0)) return undefined;
  const renewed = Date.parse(holder.renewedAt ?? holder.since);
  return Number.isNaN(renewed) ? undefined : renewed + holder.ttlMs;
}

/**
 * Judges a holder: gone when its lease has expired, or when it ran here (same host, boot and pid
 * namespace) and its process is gone; held while its lease is fresh, saying until when; unknown for a
 * holder elsewhere that keeps no lease.
 */
export function judgeHolder(holder: LeaseHolder, here: LocalFacts): LeaseState {
  const who = `pid ${holder.pid} on ${holder.hostname}`;
  const end = leaseEnd(holder);
  if (end !== undefined && here.now > end) {
    return { state: "gone", detail: `${who}: its lease expired at ${new Date(end).toISOString()} (last renewed ${holder.renewedAt ?? holder.since})` };
  }
  const until = end !== undefined ? new Date(end).toISOString() : undefined;
  if (samePlace(holder, here)) {
    const p = here.processState(holder.pid);
    if (p === "dead") return { state: "gone", detail: `${who} is gone (this machine, its process has exited)` };
    if (p === "alive") return { state: "held", detail: `${who} is running${until ? `; its lease runs until ${until}` : ""}`, expiresAt: until };
  }
  if (until) return { state: "held", detail: `${who} holds a lease until ${until} (${Math.ceil((end! - here.now) / 1000)} s left)`, expiresAt: until };
  if (holder.hostname === here.hostname && !samePlace(holder, here)) {
    return { state: "unknown", detail: `${who}: same hostname, another boot or pid namespace; it keeps no lease, so this machine cannot tell whether it runs` };
  }
  return { state: "unknown", detail: `${who} (another host, no lease: this machine cannot tell whether it still runs)` };
}
