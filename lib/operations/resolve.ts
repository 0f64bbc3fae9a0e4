import type { EnvironmentContext } from "../environment";
import { StackNotDeployedError, UnknownVersionError } from "../errors";
import { HistoryEntry, liveState, previousVersion } from "../records/history-record";
import { recordedSecretCiphertexts } from "../engine/recorded-secrets";
import { RanVersion, ranVersion, updateThatRan } from "../planning/ran-version";
import type { VersionFile } from "../versions/schema";
import { normalizeVersionName } from "../versions/store";

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
 * A rollback's target as it ran: the version named (its file must exist and be valid), with the config,
 * secret generations and verification the engine recorded for the newest successful update that applied
 * it. A version never applied to the stack is not a rollback target (exit 4): it is deployed.
 */
export function resolveRollbackTarget(ctx: EnvironmentContext, ref: string, history: HistoryEntry[]): RanVersion {
  const file = resolveTarget(ctx, ref, history);
  const ran = ranVersion(history, file, ctx.stack.project, ctx.stack.settings.config);
  if (!ran) {
    throw new UnknownVersionError(
      ctx.stack.name,
      file.version,
      ctx.stack.versions,
      `${file.version} was never applied to stack ${ctx.stack.name}, so there is nothing to roll back to: a rollback re-applies what ran. ` +
        `Deploy it instead (with a deploy's checks): \`stackpin deploy --stack ${ctx.stack.name} --version ${file.version}\`. Nothing was changed.`,
    );
  }
  return ran;
}

/**
 * The live version as it ran, for operations that re-apply it (a restore, a retention step): never the
 * file as it may have been edited since. Raises {@link StackNotDeployedError} when nothing is live.
 */
export function resolveLive(ctx: EnvironmentContext, history: HistoryEntry[]): RanVersion {
  const live = liveState(history).version;
  if (!live) throw new StackNotDeployedError(ctx.stack.name, ctx.backendUrl);
  return resolveRollbackTarget(ctx, live, history);
}

/** Words for a plan's warnings when the file on disk is not what ran. */
export function fileDiffersWarning(ran: RanVersion): string[] {
  if (!ran.fileDiffers.length) return [];
  const v = ran.version.version;
  return [
    `${v}.yaml differs from what ran at revision ${ran.revision} (${ran.fileDiffers.join("; ")}): this re-applies what ran; to apply the file, deploy it (\`stackpin deploy --version ${v}\`)`,
  ];
}

/**
 * Reads, from the backend's own update record, the ciphertexts of the secret config that the update which
 * ran `version` applied, and puts them into that history entry's recorded config (the CLI's history shows
 * only that a key was secret). Nothing is decrypted. `version` may be `previous`; a name that does not
 * resolve is left for the planner to refuse.
 */
export async function readRanSecrets(ctx: EnvironmentContext, history: HistoryEntry[], ref: string): Promise<void> {
  const name = ref === "previous" ? previousVersion(history) : normalizeVersionName(ref);
  const update = name ? updateThatRan(history, name) : undefined;
  const hidden = Object.entries(update?.config ?? {}).filter(([, v]) => v.secret && !v.value);
  if (!update?.updateId || !hidden.length) return;
  const found = await recordedSecretCiphertexts({ backendUrl: ctx.backendUrl, projectName: ctx.stack.project, stackName: ctx.stack.name, updateKey: update.updateId });
  for (const [key, v] of hidden) if (found?.[key]) v.value = found[key];
}

/**
 * Validates a named version before the engine is touched, so a bad version changes nothing; `previous`
 * needs history and is resolved later by {@link resolveTarget}.
 */
export function validateTargetEarly(ctx: EnvironmentContext, ref: string): void {
  if (ref !== "previous") ctx.store.version(ctx.stack, ref);
}
