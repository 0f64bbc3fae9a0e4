/**
 * How a program tells stackpin that it refused something a user can act on (a restore it cannot make, a
 * database it cannot reach, a release that failed its health gate). The refusal travels inside the
 * engine's error text, the only channel from a provider to the Automation API, as one marked line; this
 * module writes and reads that line, so the format lives in one place.
 */

/** What a program can refuse. */
export type RefusalKind = "health-gate" | "restore-impossible" | "database-unavailable";

const kinds: readonly RefusalKind[] = ["health-gate", "restore-impossible", "database-unavailable"];

/** The marker that starts a refusal's line: `[stackpin:<kind>]`. */
export function refusalMarker(kind: RefusalKind): string {
  return `[stackpin:${kind}]`;
}

/** A program's refusal: throw it from a provider or a program, and stackpin raises its typed error. */
export class ProgramRefusal extends Error {
  constructor(
    readonly kind: RefusalKind,
    readonly detail: string,
  ) {
    super(`${refusalMarker(kind)} ${detail.split("\n")[0]}`);
  }
}

/** The first refusal in an engine's error text, or undefined. */
export function decodeRefusal(text: string): { kind: RefusalKind; detail: string } | undefined {
  const m = /\[stackpin:([a-z-]+)\] ([^\n]*)/.exec(text);
  if (!m || !kinds.includes(m[1] as RefusalKind)) return undefined;
  // The engine wraps the provider's message (quotes, a trailing period or semicolon): cut them off.
  return { kind: m[1] as RefusalKind, detail: m[2].replace(/\s*\.?$/, "").replace(/[";]+$/, "") };
}
