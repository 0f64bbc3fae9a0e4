import * as fs from "node:fs";

/** What a redacted value is replaced with. */
export const redactedMark = "[redacted]";

// Names of variables that hold credentials by convention (cloud keys, tokens, passphrases, passwords).
const secretName = /PASSPHRASE|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE|(^|_)API_?KEY$|(^|_)ACCESS_KEY|_KEY_ID$|AUTH/i;

// Shapes of credentials that are recognisable without knowing them.
const secretShapes: RegExp[] = [
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g,
  /\b(AKIA|ASIA)[0-9A-Z]{16}\b/g, // AWS access key ids
  /\bgh[pousr]_[A-Za-z0-9]{30,}\b/g, // GitHub tokens
  /\bxox[abprs]-[A-Za-z0-9-]{10,}/g, // Slack tokens
  /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, // JWTs
  /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi,
  /\b(hvs|s)\.[A-Za-z0-9]{24,}\b/g, // Vault tokens
];
// A password in a URL's user info: `scheme://user:password@host`. The user stays; a password may hold
// anything but whitespace, `/` and `@` (a `:` only percent-encoded, but it is taken whole anyway).
const urlPassword = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:@/?#]*:)([^\s@/?#]*)@/gi;

/**
 * `text` with the password of every URL in it replaced by {@link redactedMark}
 * (`postgres://app:hunter2@db/shop` becomes `postgres://app:[redacted]@db/shop`).
 */
export function maskUrlPasswords(text: string): string {
  return text.replace(urlPassword, (m, head: string, password: string) => (password === "" ? m : `${head}${redactedMark}@`));
}

// `name=value` / `name: value` / `"name": "value"` where the name says it is a secret.
const namedValue = /([A-Za-z0-9_.-]*(?:passphrase|password|passwd|secret|token|credential|api[_-]?key|access[_-]?key)[A-Za-z0-9_.-]*"?\s*[=:]\s*"?)([^\s"',;]+)/gi;

/**
 * The values in `env` that are credentials by their variable's name (and the passphrase file's content),
 * for {@link redact}. Short values are left out: replacing "1" everywhere would only garble output.
 */
export function secretValuesOf(env: NodeJS.ProcessEnv): string[] {
  const values = Object.entries(env)
    .filter(([name, value]) => value !== undefined && secretName.test(name) && !/_FILE$/.test(name))
    .map(([, value]) => value!);
  const file = env.PULUMI_CONFIG_PASSPHRASE_FILE;
  if (file) {
    try {
      values.push(fs.readFileSync(file, "utf8").replace(/\r?\n$/, ""));
    } catch {
      // unreadable here: then no command run from here could print it either
    }
  }
  return [...new Set(values.filter((v) => v.length >= 6))];
}

/**
 * Output of a command that ran with access to secrets, made safe to record: every known secret value and
 * every recognisable credential replaced by {@link redactedMark}, then cut to `limit` characters.
 */
export function redact(text: string, secrets: string[], limit: number): string {
  let out = text;
  // Longest first, so a value containing another is replaced whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join(redactedMark);
  for (const shape of secretShapes) out = out.replace(shape, redactedMark);
  out = maskUrlPasswords(out);
  out = out.replace(namedValue, (_m, name: string, value: string) => (value === redactedMark ? `${name}${value}` : `${name}${redactedMark}`));
  return out.length > limit ? `${out.slice(0, limit)}… (${out.length - limit} more characters not kept)` : out;
}
