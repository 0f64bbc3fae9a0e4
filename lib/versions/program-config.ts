import type * as z from "zod";
import type { ProgramConfigSpec } from "../../programs/types";
import type { ConfigValue } from "./schema";

/** Who a config key belongs to, from its namespace. */
type KeyOwner = { kind: "program"; name: string } | { kind: "provider" } | { kind: "refused"; problem: string };

function ownerOf(key: string, project: string, program: string, spec: ProgramConfigSpec): KeyOwner {
  const colon = key.indexOf(":");
  if (colon < 0) return { kind: "program", name: key };
  const namespace = key.slice(0, colon);
  if (namespace === project) return { kind: "program", name: key.slice(colon + 1) };
  if (namespace === "stackpin") {
    return { kind: "refused", problem: `config.${key}: the stackpin namespace is set by stackpin from the version file, not written by hand` };
  }
  if (spec.providerNamespaces.includes(namespace)) return { kind: "provider" };
  const allowed = [project, ...spec.providerNamespaces].join(", ");
  return {
    kind: "refused",
    problem: `config.${key}: namespace "${namespace}" is not used by program ${program} (namespaces it reads: ${allowed}; a key without one is the project's)`,
  };
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length];
}

function unknownKey(key: string, known: string[], program: string): string {
  const near = known.filter((k) => editDistance(key, k) <= Math.max(1, Math.floor(k.length / 4)));
  const hint = near.length ? `did you mean ${near.join(" or ")}? ` : "";
  return `config.${key}: not a setting of program ${program}; ${hint}known: ${known.join(", ")}`;
}

// A `secure:` value reaches the program decrypted, as a string.
const asProgramSees = (v: ConfigValue): unknown => (typeof v === "object" && v !== null && !Array.isArray(v) && "secure" in v ? "[secret]" : v);

/** The program's own keys (unqualified) with the values the program will read, and the problems found. */
export interface ProgramConfigCheck {
  problems: string[];
  /** Unqualified key -> the key as written, for naming it in messages. */
  written: Record<string, string>;
}

/**
 * Checks config against a program's declared schema: every key's namespace (the project's, a provider
 * of the program's, never `stackpin:`), no key written twice (`message` and `<project>:message`), and
 * the program's own keys against its zod schema: types, required keys (unless `partial`, for
 * `stack.yaml`, whose config versions complete) and unknown keys, each problem naming the key.
 */
export function checkProgramConfig(
  config: Record<string, ConfigValue>,
  options: { program: string; project: string; spec: ProgramConfigSpec; partial?: boolean },
): ProgramConfigCheck {
  const { program, project, spec } = options;
  const problems: string[] = [];
  // Null prototypes: a key named like an Object method is data here, never inherited.
  const own: Record<string, unknown> = Object.create(null);
  const written: Record<string, string> = Object.create(null);
  for (const [key, value] of Object.entries(config)) {
    const owner = ownerOf(key, project, program, spec);
    if (owner.kind === "refused") problems.push(owner.problem);
    if (owner.kind !== "program") continue;
    if (owner.name in written) {
      problems.push(`config.${key}: the same setting as config.${written[owner.name]}; write it once`);
      continue;
    }
    written[owner.name] = key;
    own[owner.name] = asProgramSees(value);
  }
  const known = Object.keys(spec.schema.shape);
  for (const name of Object.keys(own)) {
    if (!known.includes(name)) problems.push(unknownKey(written[name], known, program));
  }
  const schema: z.ZodObject = options.partial ? spec.schema.partial() : spec.schema;
  const parsed = schema.safeParse(Object.fromEntries(Object.entries(own).filter(([k]) => known.includes(k))));
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const [head, ...rest] = issue.path.map(String);
      const key = head === undefined ? "" : (written[head] ?? head);
      const where = ["config", ...(key ? [key] : []), ...rest].join(".");
      const message = issue.code === "invalid_type" && /received undefined/.test(issue.message) ? `required by program ${program}` : issue.message;
      problems.push(`${where}: ${message}`);
    }
  }
  return { problems, written };
}
