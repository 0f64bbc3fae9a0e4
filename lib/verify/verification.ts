import { exec } from "node:child_process";
import pRetry from "p-retry";
import { redact, secretValuesOf } from "./redact";
import type { VerifySettings } from "../versions/schema";

/** Variables every smoke command gets, besides `ENDPOINT` and those `verify.smokeEnv` names: none of them secret. */
export const baseSmokeEnv = ["PATH", "HOME", "LANG", "TMPDIR"];

/** The most of a smoke command's output a check keeps (history, incident records, the audit trail, webhooks). */
export const smokeOutputLimit = 2048;

/** Where smoke commands take their environment from, and what must never be recorded from their output. */
export interface SmokeOptions {
  /** The environment the variables are taken from; defaults to this process's. */
  env?: NodeJS.ProcessEnv;
  /** Values to redact besides the credentials found in `env` by name (e.g. a passphrase given in code). */
  secrets?: string[];
}

/** One check's outcome. */
export interface CheckResult {
  name: string;
  passed: boolean;
  /** Attempts made (health check), 1 for the others. */
  attempts: number;
  detail: string;
  durationMs: number;
}

/** The outcome of verifying a version after an apply. */
export interface VerificationResult {
  version: string;
  endpoint: string;
  passed: boolean;
  checks: CheckResult[];
  /** The first failed check's detail, for history and notifications. */
  reason?: string;
}

/** What the health endpoint answered. */
export interface HealthAnswer {
  status: number;
  body: unknown;
}

async function getHealth(url: string, timeoutMs: number): Promise<HealthAnswer> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // a plain-text health answer is fine; only the version check needs JSON
  }
  return { status: res.status, body };
}

/**
 * Polls `url` until it answers 2xx (and, when `expectVersion` is set, reports that version), with the
 * retries and backoff of `settings`. Resolves with the last answer; rejects with the last failure.
 */
export async function waitHealthy(
  url: string,
  settings: VerifySettings["health"],
  expectVersion?: string,
  onAttempt?: (attempt: number, error: string) => void,
): Promise<{ answer: HealthAnswer; attempts: number }> {
  let attempts = 0;
  const answer = await pRetry(
    async () => {
      attempts += 1;
      const a = await getHealth(url, settings.timeoutMs).catch((e: Error) => {
        throw new Error(`${url}: ${e.cause instanceof Error ? e.cause.message : e.message}`);
      });
      if (a.status < 200 || a.status >= 300) throw new Error(`${url} answered ${a.status}: ${JSON.stringify(a.body).slice(0, 200)}`);
      const reported = (a.body as { version?: unknown } | null)?.version;
      if (expectVersion !== undefined && reported !== expectVersion) {
        throw new Error(`${url} reports version ${JSON.stringify(reported)}, expected ${expectVersion}`);
      }
      return a;
    },
    {
      retries: settings.retries,
      minTimeout: settings.intervalMs,
      factor: settings.backoff,
      randomize: false,
      onFailedAttempt: (e) => onAttempt?.(e.attemptNumber, e.message),
    },
  );
  return { answer, attempts };
}

/**
 * The environment of a smoke command: the base variables, the ones the version names, and `ENDPOINT`.
 * Never the operator's whole environment: it holds the passphrase and cloud credentials.
 */
export function smokeEnvironment(from: NodeJS.ProcessEnv, names: string[], endpoint: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...baseSmokeEnv, ...names]) {
    const value = from[name];
    if (value !== undefined) env[name] = value;
  }
  env.ENDPOINT = endpoint;
  return env;
}

function runSmoke(command: string, env: Record<string, string>, timeoutMs: number, secrets: string[]): Promise<string> {
  const safe = (text: string, lines: number) => redact(redact(text, secrets, Infinity).trim().split("\n").slice(-lines).join(" "), [], smokeOutputLimit);
  return new Promise((resolve, reject) => {
    exec(command, { env, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(safe(stderr || stdout || err.message, 3)));
      else resolve(safe(stdout, 1));
    });
  });
}

/**
 * Verifies a version through its public endpoint: the health check with retries and backoff, the live
 * version check, then each smoke command. Stops at the first failure.
 */
export async function verifyRelease(
  endpoint: string,
  version: string,
  settings: VerifySettings,
  onCheck?: (check: CheckResult) => void,
  smokeOptions: SmokeOptions = {},
): Promise<VerificationResult> {
  const from = smokeOptions.env ?? process.env;
  const secrets = [...secretValuesOf(from), ...(smokeOptions.secrets ?? [])];
  const checks: CheckResult[] = [];
  const record = (c: CheckResult) => {
    checks.push(c);
    onCheck?.(c);
    return c.passed;
  };
  const healthUrl = `${endpoint.replace(/\/$/, "")}${settings.health.path}`;
  let started = Date.now();
  let ok: boolean;
  try {
    const { attempts } = await waitHealthy(healthUrl, settings.health, settings.checkVersion ? version : undefined);
    ok = record({
      name: settings.checkVersion ? "health and live version" : "health",
      passed: true,
      attempts,
      detail: `${healthUrl} healthy${settings.checkVersion ? `, reports ${version}` : ""}`,
      durationMs: Date.now() - started,
    });
  } catch (e) {
    ok = record({
      name: settings.checkVersion ? "health and live version" : "health",
      passed: false,
      attempts: settings.health.retries + 1,
      detail: (e as Error).message,
      durationMs: Date.now() - started,
    });
  }
  for (const smoke of ok ? settings.smoke : []) {
    started = Date.now();
    try {
      const out = await runSmoke(smoke.run, smokeEnvironment(from, settings.smokeEnv ?? [], endpoint), smoke.timeoutMs, secrets);
      ok = record({ name: `smoke: ${smoke.name}`, passed: true, attempts: 1, detail: out.slice(0, 200), durationMs: Date.now() - started });
    } catch (e) {
      ok = record({ name: `smoke: ${smoke.name}`, passed: false, attempts: 1, detail: (e as Error).message, durationMs: Date.now() - started });
    }
    if (!ok) break;
  }
  const failed = checks.find((c) => !c.passed);
  return { version, endpoint, passed: !failed, checks, reason: failed ? `${failed.name}: ${failed.detail}` : undefined };
}
