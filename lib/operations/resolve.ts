import type { EnvironmentContext } from "../environment";
import { UnknownVersionError } from "../errors";
import { HistoryEntry, liveState, previousVersion } from "../history-record";
import type { VersionFile } from "../versions/schema";

/**
 * Turns what the user typed (`v41`, `41`, `previous`) into a validated version file. `previous` is the
 * version before the live one in history (see {@link previousVersion}).
 */
export function resolveTarget(ctx: EnvironmentContext, ref: string, history: HistoryEntry[]): VersionFile {
  if (ref === "previous") {
    const prev = previousVersion(history);
    if (!prev) {
      const live = liveState(history).version;
      throw new UnknownVersionError(
        ctx.stack.name,
        ref,
        ctx.stack.versions,
        live
          ? `stack ${ctx.stack.name} has no version before ${live} to go back to; name one with --to (known: ${ctx.stack.versions.join(", ")})`
          : `stack ${ctx.stack.name} has never been deployed, so there is no previous version`,
      );
    }
    return ctx.store.version(ctx.stack, prev);
  }
  return ctx.store.version(ctx.stack, ref);
}

/**
 * Validates a named version before the engine is touched, so a bad version changes nothing; `previous`
 * needs history and is resolved later by {@link resolveTarget}.
 */
export function validateTargetEarly(ctx: EnvironmentContext, ref: string): void {
  if (ref !== "previous") ctx.store.version(ctx.stack, ref);
}
