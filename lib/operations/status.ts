import type { StackOutput } from "../engine/stack";
import type { EnvironmentContext } from "../environment";
import { HistoryEntry, lastVerifiedVersion, liveState, withoutConfig } from "../records/history-record";
import { Freeze, liveTags } from "../records/ledger";
import type { ReadinessReport } from "../planning/readiness";
import { readHistoryAndTags } from "./apply";

/** Which version is live on a stack now, according to the backend. */
export interface Status {
  stack: string;
  /** The live version, or undefined when nothing was ever applied (or the stack was destroyed). */
  liveVersion?: string;
  /** The revision that made it live. */
  revision?: number;
  /** The newest history entry. */
  lastOperation?: HistoryEntry;
  /** Set when the newest apply failed; the stack may be partially at its target. */
  failed?: HistoryEntry;
  /** The deploy freeze in force, if any (rollbacks are still allowed). */
  freeze?: Freeze;
  /** The newest version that passed verification after an apply. */
  verifiedVersion?: string;
  /** The `stackpin:*` stack tags in the backend. */
  tags: Record<string, string>;
  /** The baselines `watch --record-baseline` recorded, by rule (lowercase words joined by dashes). */
  baselines: Record<string, number>;
  outputs: Record<string, StackOutput>;
  /** Versions available under `stacks/<stack>/`. */
  versions: string[];
  /** The newest readiness check of the ways back (`stackpin check`, or `watch`'s), as it was recorded; absent when none was made. */
  readiness?: ReadinessReport;
}

/** Reads the live version, the last operation and the outputs of a stack. Changes nothing. */
export async function status(ctx: EnvironmentContext): Promise<Status> {
  // One CLI call (`stack history`) and the records document; a second (`stack output`) only when the newest
  // update is not an apply whose outputs stackpin recorded. The Automation API is not loaded.
  const engine = await ctx.openReader();
  try {
    const { history, tags: allTags, records } = await readHistoryAndTags(engine);
    const live = liveState(history);
    // stackpin's bookkeeping (version, applied-by, verified-version) is in its records now; an older
    // stackpin's stack tags are read (and shown) only while they were never moved there.
    const tags = {
      ...Object.fromEntries(Object.entries(allTags).filter(([k]) => k.startsWith("stackpin:") && !k.startsWith("stackpin:verify:"))),
      ...liveTags(records.live),
    };
    // The outputs the newest update left, as its apply recorded them; asked of the engine otherwise.
    const recorded = records.live?.outputs && history[0] && records.live.updateId === history[0].updateId ? records.live.outputs : undefined;
    return {
      stack: ctx.stack.name,
      liveVersion: live.version,
      revision: live.revision,
      lastOperation: history[0] && withoutConfig(history[0]),
      failed: live.failed && withoutConfig(live.failed),
      freeze: records.freeze,
      verifiedVersion: lastVerifiedVersion(history),
      tags,
      baselines: records.baselines,
      outputs: recorded ?? (await engine.outputs()),
      versions: ctx.stack.versions,
      ...(records.readiness ? { readiness: records.readiness } : {}),
    };
  } finally {
    engine.close();
  }
}
