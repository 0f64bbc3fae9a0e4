import type { EnvironmentContext } from "../environment";
import { UnknownVersionError } from "../errors";
import type { ConfigValue } from "../versions/schema";
import { normalizeVersionName } from "../versions/store";

/** Options for {@link setSecret}. */
export interface SetSecretOptions {
  /** The version file to write the secret into; without it, `stackFile` must be set. */
  version?: string;
  /** Write into `stack.yaml`'s config (shared by every version) instead of a version file. */
  stackFile?: boolean;
  /** The config key (`apiToken` or `namespace:key`); with `path`, a dotted path into it (`database.password`). */
  key: string;
  /** Read `key` as `key.sub.sub`: the secret is one value inside structured config. */
  path?: boolean;
  /** The plain value; it is encrypted with the stack's secrets provider and never written in plain text. */
  value: string;
}

/** Sets `value` at `path` inside `parent` (objects made on the way), returning the new top value. */
function setIn(parent: unknown, path: string[], value: unknown): unknown {
  if (!path.length) return value;
  const base = typeof parent === "object" && parent !== null && !Array.isArray(parent) ? (parent as Record<string, unknown>) : {};
  return { ...base, [path[0]]: setIn(base[path[0]], path.slice(1), value) };
}

/**
 * Encrypts a secret with the stack's secrets provider and stores the ciphertext in a version file (or in
 * `stack.yaml`), as `key: { secure: ... }`, or with `path` inside structured config
 * (`database: { password: { secure: ... } }`). The stack's resources and history are not changed.
 */
export async function setSecret(ctx: EnvironmentContext, options: SetSecretOptions): Promise<{ file: string; key: string }> {
  if (!options.version === !options.stackFile) throw new Error("secret set writes into one file: name a version, or the stack file");
  const [head, ...rest] = options.path ? options.key.split(".") : [options.key];
  if (!head || rest.some((p) => !p)) throw new Error(`${options.key}: not a dotted path into config (key.sub)`);
  const name = options.version ? normalizeVersionName(options.version) : undefined;
  if (name && !ctx.stack.versions.includes(name)) throw new UnknownVersionError(ctx.stack.name, options.version!, ctx.stack.versions);
  const version = name ? ctx.store.version(ctx.stack, name) : undefined;
  const engine = await ctx.openEngine({ create: true });
  try {
    const qualified = head.includes(":") ? head : `${ctx.stack.project}:${head}`;
    const secure = await engine.encrypt(qualified, options.value);
    if (!version) return { file: ctx.store.setStackConfigValue(ctx.stack, head, rest, { secure }), key: options.key };
    version.config[head] = setIn(version.config[head], rest, { secure }) as ConfigValue;
    return { file: ctx.store.writeVersion(ctx.stack, version, { overwrite: true }), key: options.key };
  } finally {
    engine.close();
  }
}
