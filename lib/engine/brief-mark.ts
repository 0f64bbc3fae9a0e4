import * as crypto from "node:crypto";
import { holderHere } from "./interruption";
import type { InFlightMark } from "./types";
import { recordStoreOf, RecordsEngine } from "../records/ledger";

/**
 * Runs `fn` — a short change made beside the engine, such as moving traffic first — under an in-flight
 * mark of its own, written only when the stack has none (compare-and-swap in the records), and removed
 * after by its id. Undefined, with `fn` never run, when another mark is there: the engine's path then
 * judges that holder as usual. A process killed inside `fn` leaves the mark, and the next command
 * recovers from it (its holder is gone), refreshing the stack from the world.
 */
export async function underBriefMark<T>(engine: RecordsEngine, what: string, ttlMs: number, fn: () => Promise<T>): Promise<{ value: T } | undefined> {
  const store = recordStoreOf(engine);
  const mark: InFlightMark = { what: what.slice(0, 140), kind: "update", id: crypto.randomUUID(), ...holderHere({ ttlMs }) };
  mark.renewedAt = mark.since;
  let taken = false;
  await store.update((r) => {
    taken = false;
    if (r.inFlight) return;
    r.inFlight = mark;
    taken = true;
  });
  if (!taken) return undefined;
  try {
    return { value: await fn() };
  } finally {
    await store.update((r) => {
      if (r.inFlight?.id === mark.id) delete r.inFlight;
    });
  }
}
