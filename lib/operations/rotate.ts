import type { EnvironmentContext } from "../environment";
import { StackNotDeployedError, UnknownVersionError } from "../errors";
import { liveState } from "../records/history-record";
import { readHistory } from "./apply";

/** Options for {@link rotate}. */
export interface RotateOptions {
  /** The secret's name (a key of `secrets:` in the version files). */
  secret: string;
}

/** What {@link rotate} wrote. */
export interface RotateResult {
  stack: string;
  secret: string;
  /** The new version: a copy of the live version (or the newest, before any deploy) with the higher generation. */
  version: string;
  from: string;
  generation: number;
  file: string;
}

/**
 * Produces the next version: a copy of the live version's file (the newest file before any deploy),
 * numbered after the newest, whose generation for `secret` is one above any generation seen (in version
 * files or live). Deploying it rotates the secret. Nothing is applied here.
 */
export async function rotate(ctx: EnvironmentContext, options: RotateOptions): Promise<RotateResult> {
  const versions = ctx.stack.versions;
  const newest = versions[versions.length - 1];
  if (!newest) throw new UnknownVersionError(ctx.stack.name, "(any)", versions, `stack ${ctx.stack.name} has no version files to rotate from`);
  const files = versions.map((v) => ctx.store.version(ctx.stack, v));
  let live = 0;
  let base = newest;
  try {
    const engine = await ctx.openEngine({ create: false });
    try {
      const state = liveState(await readHistory(engine));
      live = state.secretGenerations?.[options.secret] ?? 0;
      if (state.version && versions.includes(state.version)) base = state.version;
    } finally {
      engine.close();
    }
  } catch (err) {
    if (!(err instanceof StackNotDeployedError)) throw err;
  }
  const generation = Math.max(live, ...files.map((f) => f.secrets[options.secret]?.generation ?? 0)) + 1;
  const major = Number(newest.slice(1).split(".")[0]);
  const next = `v${major + 1}`;
  const file = ctx.store.writeRotatedVersion(ctx.stack, base, next, options.secret, generation);
  return { stack: ctx.stack.name, secret: options.secret, version: next, from: base, generation, file };
}
