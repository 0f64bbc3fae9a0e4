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
  /** Whether the holder's pid runs here as the holder (not a reused pid): from /proc, as `livenessOf` proves it. */
  processState: (holder: LeaseHolder) => { state: "alive" | "dead" | "unknown"; detail?: string };
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
 * Judges a holder. On its own machine (same host, boot and pid namespace) its process decides: gone once
 * it has exited, held while it runs (a live process is never broken, even when it has stopped renewing).
 * Elsewhere its lease decides: gone once expired, held until then, saying until when. A holder elsewhere
 * that keeps no lease (Pulumi's own lock, an older stackpin) is unknown: nothing here can prove it gone.
 */
export function judgeHolder(holder: LeaseHolder, here: LocalFacts): LeaseState {
  const who = `pid ${holder.pid} on ${holder.hostname}`;
  const end = leaseEnd(holder);
  const until = end !== undefined ? new Date(end).toISOString() : undefined;
  const left = end !== undefined ? `${Math.max(0, Math.ceil((end - here.now) / 1000))} s left` : "";
  if (samePlace(holder, here)) {
    const p = here.processState(holder);
    if (p.state === "dead") return { state: "gone", detail: p.detail ?? `${who} is gone (this machine, its process has exited)` };
    if (p.state === "alive") {
      const lease = until ? (end! > here.now ? `; its lease runs until ${until} (${left})` : `; it has not renewed its lease since ${holder.renewedAt ?? holder.since}`) : "";
      return { state: "held", detail: `${p.detail ?? `${who} is running`}${lease}`, expiresAt: until };
    }
  }
  if (end !== undefined && here.now > end) {
    return { state: "gone", detail: `${who}: its lease expired at ${until} (last renewed ${holder.renewedAt ?? holder.since})` };
  }
  if (until) return { state: "held", detail: `${who} holds a lease until ${until} (${left})`, expiresAt: until };
  if (holder.hostname === here.hostname) {
    return { state: "unknown", detail: `${who}: same hostname, but its boot or pid namespace is not this machine's (or was not recorded), and it keeps no lease: nothing here can tell whether it runs` };
  }
  return { state: "unknown", detail: `${who} (another host, no lease: nothing here can tell whether it still runs)` };
}
