import diff from "microdiff";
import type { ConfigValue } from "./schema";

/** The text shown in place of a secret value everywhere: output, JSON, history. */
export const maskedSecret = "[secret]";

/** One change between two versions' config. Secret values are never present, only `"[secret]"`. */
export interface ConfigChange {
  /** The config key, with a dotted path into structured values (`features.beta`). */
  key: string;
  kind: "added" | "removed" | "changed";
  /** True when either side is a secret; `before`/`after` are then masked. */
  secret: boolean;
  before?: unknown;
  after?: unknown;
}

function isSecure(value: unknown): value is { secure: string } {
  return typeof value === "object" && value !== null && !Array.isArray(value) && "secure" in value;
}

/**
 * The config diff between the live version and a target, key by key. Secrets compare by ciphertext: a
 * re-encrypted secret shows as changed even when its plain value is the same, which errs on the side of
 * telling the reviewer to look.
 */
export function diffConfig(
  before: Record<string, ConfigValue>,
  after: Record<string, ConfigValue>,
): ConfigChange[] {
  const changes: ConfigChange[] = [];
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  for (const key of keys) {
    const a = before[key];
    const b = after[key];
    const secret = isSecure(a) || isSecure(b);
    if (a === undefined) {
      changes.push({ key, kind: "added", secret, after: secret ? maskedSecret : b });
    } else if (b === undefined) {
      changes.push({ key, kind: "removed", secret, before: secret ? maskedSecret : a });
    } else if (secret) {
      if (!isSecure(a) || !isSecure(b) || a.secure !== b.secure) {
        changes.push({ key, kind: "changed", secret, before: maskedSecret, after: maskedSecret });
      }
    } else if (typeof a === "object" && typeof b === "object" && a !== null && b !== null) {
      for (const d of diff(a as Record<string, unknown>, b as Record<string, unknown>)) {
        const sub = `${key}.${d.path.join(".")}`;
        if (d.type === "CREATE") changes.push({ key: sub, kind: "added", secret, after: d.value });
        else if (d.type === "REMOVE") changes.push({ key: sub, kind: "removed", secret, before: d.oldValue });
        else changes.push({ key: sub, kind: "changed", secret, before: d.oldValue, after: d.value });
      }
    } else if (a !== b) {
      changes.push({ key, kind: "changed", secret, before: a, after: b });
    }
  }
  return changes;
}
