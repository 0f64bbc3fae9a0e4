import diff from "microdiff";
import { maskUrlPasswords } from "../verify/redact";
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

// Holds a `{ secure: ... }` at any depth (structured config with a secret inside, `database.password`).
function holdsSecure(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  return isSecure(value) || Object.values(value).some(holdsSecure);
}

// A plain value as shown: structured values as they are, a URL's password masked.
function shown(value: unknown): unknown {
  if (typeof value === "string") return maskUrlPasswords(value);
  if (Array.isArray(value)) return value.map(shown);
  if (typeof value === "object" && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, isSecure(v) ? maskedSecret : shown(v)]));
  return value;
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
      changes.push({ key, kind: "added", secret: secret || holdsSecure(b), after: secret ? maskedSecret : shown(b) });
    } else if (b === undefined) {
      changes.push({ key, kind: "removed", secret: secret || holdsSecure(a), before: secret ? maskedSecret : shown(a) });
    } else if (secret) {
      if (!isSecure(a) || !isSecure(b) || a.secure !== b.secure) {
        changes.push({ key, kind: "changed", secret, before: maskedSecret, after: maskedSecret });
      }
    } else if (typeof a === "object" && typeof b === "object" && a !== null && b !== null) {
      const seen = new Set<string>();
      for (const d of diff(a as Record<string, unknown>, b as Record<string, unknown>)) {
        // A change inside a `{ secure: ... }` is a change of that secret, shown at its own key, masked.
        const at = d.path[d.path.length - 1] === "secure" ? d.path.slice(0, -1) : d.path;
        const sub = `${key}.${at.join(".")}`;
        const hidden = at.length < d.path.length || ("value" in d && holdsSecure(d.value)) || ("oldValue" in d && holdsSecure(d.oldValue));
        if (hidden) {
          if (seen.has(sub)) continue;
          seen.add(sub);
          const kind = d.type === "CREATE" && at.length === d.path.length ? "added" : d.type === "REMOVE" && at.length === d.path.length ? "removed" : "changed";
          changes.push({ key: sub, kind, secret: true, ...(kind !== "added" ? { before: maskedSecret } : {}), ...(kind !== "removed" ? { after: maskedSecret } : {}) });
        } else if (d.type === "CREATE") changes.push({ key: sub, kind: "added", secret, after: shown(d.value) });
        else if (d.type === "REMOVE") changes.push({ key: sub, kind: "removed", secret, before: shown(d.oldValue) });
        else changes.push({ key: sub, kind: "changed", secret, before: shown(d.oldValue), after: shown(d.value) });
      }
    } else if (a !== b) {
      changes.push({ key, kind: "changed", secret, before: shown(a), after: shown(b) });
    }
  }
  return changes;
}
