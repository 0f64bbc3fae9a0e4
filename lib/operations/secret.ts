import type { EnvironmentContext } from "../environment";
import { UnknownVersionError } from "../errors";
import { normalizeVersionName } from "../versions/store";

/** Options for {@link setSecret}. */
export interface SetSecretOptions {
  /** The version file to write the secret into. */
  version: string;
  /** The config key (`apiToken` or `namespace:key`). */
  key: string;
  /** The plain value; it is encrypted with the stack's secrets provider and never written in plain text. */
  value: string;
}

/**
 * Encrypts a secret with the stack's secrets provider and stores the ciphertext in a version file, as
 * `key: { secure: ... }`. The stack's resources and history are not changed.
 */
export async function setSecret(ctx: EnvironmentContext, options: SetSecretOptions): Promise<{ file: string; key: string }> {
  const name = normalizeVersionName(options.version);
  if (!ctx.stack.versions.includes(name)) throw new UnknownVersionError(ctx.stack.name, options.version, ctx.stack.versions);
  const version = ctx.store.version(ctx.stack, name);
  const engine = await ctx.openEngine({ create: true });
  try {
    const qualified = options.key.includes(":") ? options.key : `${ctx.stack.project}:${options.key}`;
    const secure = await engine.encrypt(qualified, options.value);
    version.config[options.key] = { secure };
    return { file: ctx.store.writeVersion(ctx.stack, version, { overwrite: true }), key: options.key };
  } finally {
    engine.close();
  }
}
