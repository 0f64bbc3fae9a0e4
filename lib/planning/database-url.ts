/**
 * A PostgreSQL URL and the password that goes with it, kept apart: the URL (with its user, never a
 * password) may be shown, put on a command line or kept in state; the password travels only as a
 * secret (a Pulumi secret, a passfile, an environment variable).
 */

/** A connection: the URL without a password, and the password when there is one. */
export interface DatabaseConnection {
  /** `postgres://user@host:port/db`: never a password in it. */
  url: string;
  password?: string;
}

/**
 * Splits `url` into the URL without its password and the password (percent-decoded). A URL that is not
 * parseable is returned as is, with no password taken out.
 */
export function splitDatabaseUrl(url: string): DatabaseConnection {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { url };
  }
  if (!parsed.password) return { url };
  const password = decodeURIComponent(parsed.password);
  parsed.password = "";
  return { url: parsed.toString(), password };
}

/** True when `url` carries a password in its user info (`postgres://user:password@host/db`). */
export function urlHasPassword(url: string): boolean {
  return splitDatabaseUrl(url).password !== undefined;
}

/** The URL with `password` (percent-encoded) in its user info: what a client that only takes a URL needs. */
export function urlWithPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const parsed = new URL(url);
  parsed.password = encodeURIComponent(password);
  return parsed.toString();
}

/**
 * The connection a `database` config gives: its `url` (maybe carrying a password) and its `password`
 * (decrypted), which must not both give one.
 */
export function databaseConnection(config: { url: string; password?: string }): DatabaseConnection {
  const split = splitDatabaseUrl(config.url);
  if (config.password !== undefined && split.password !== undefined) {
    throw new Error("database: the password is given twice, in url and in password; keep it only in password (a secure value)");
  }
  return { url: split.url, password: config.password ?? split.password };
}

/**
 * Warnings for config whose `database.url` carries a password in plain text (in stack.yaml or the
 * version), where it is stored and recorded unencrypted. Never repeats the password.
 */
export function plainPasswordWarnings(config: Record<string, unknown>, project: string): string[] {
  const warnings: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    if (key !== "database" && key !== `${project}:database`) continue;
    const url = typeof value === "object" && value !== null ? (value as { url?: unknown }).url : undefined;
    if (typeof url === "string" && urlHasPassword(url)) {
      warnings.push(
        `config.${key}.url carries a password in plain text: it is kept unencrypted in stack.yaml and in the backend's record of every update; ` +
          `take it out of the URL and encrypt it: \`stackpin secret set --stack-file --path --key ${key}.password\``,
      );
    }
  }
  return warnings;
}
