import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import type { UpdateSummary } from "@pulumi/pulumi/automation";
import { getObject, listKeys, s3LocationOf } from "../records/s3-backend";
import { recordBackendRead, timingEnabled } from "./cli-timing";

/**
 * A stack's update history read from a `file://` or `s3://` backend's own files
 * (`.pulumi/history/<project>/<stack>/<stack>-<nanoseconds>.history.json`), as `pulumi stack history
 * --json` shows it without `--show-secrets`: newest first, every update, a secret config value only marked
 * secret (its ciphertext is not passed on). No Pulumi CLI is started: reading a backend directory or a
 * handful of objects takes milliseconds where starting the CLI takes most of a second.
 *
 * Undefined when the backend is of another kind, or holds a record this reader does not know how to read
 * (zstd-compressed, or a shape it does not recognise): the caller then asks the CLI.
 */
export async function readBackendHistory(backendUrl: string, projectName: string, stackName: string): Promise<UpdateSummary[] | undefined> {
  const started = performance.now();
  const updates = await readHistoryRecords(backendUrl, projectName, stackName);
  if (updates && timingEnabled()) recordBackendRead(`history (${updates.length} updates)`, performance.now() - started);
  return updates;
}

async function readHistoryRecords(backendUrl: string, projectName: string, stackName: string): Promise<UpdateSummary[] | undefined> {
  const records = await readHistoryFiles(backendUrl, projectName, stackName);
  if (!records) return undefined;
  const updates: UpdateSummary[] = [];
  for (const raw of records) {
    const u = updateSummaryOf(raw);
    if (!u) return undefined;
    updates.push(u);
  }
  return updates;
}

/**
 * The raw update records of a stack on a `file://` or `s3://` backend, newest first (as stored: JSON,
 * maybe gzip-compressed; {@link historyRecordJson} reads one). Undefined for other backends, for a stack
 * without a checkpoint, and when a record is zstd-compressed.
 */
export async function readHistoryFiles(backendUrl: string, projectName: string, stackName: string): Promise<Buffer[] | undefined> {
  const dir = path.posix.join(".pulumi", "history", projectName, stackName);
  // The stack's checkpoint proves the stack exists; without it the CLI says why (no such stack).
  const checkpoints = [".json", ".json.gz", ".json.zst"].map((ext) => path.posix.join(".pulumi", "stacks", projectName, `${stackName}${ext}`));
  if (backendUrl.startsWith("file://")) {
    const root = backendUrl.slice("file://".length);
    if (!checkpoints.some((c) => fs.existsSync(path.join(root, c)))) return undefined;
    const full = path.join(root, dir);
    if (!fs.existsSync(full)) return [];
    const names = historyNames(fs.readdirSync(full));
    return names?.map((n) => fs.readFileSync(path.join(full, n)));
  }
  const s3 = s3LocationOf(backendUrl);
  if (!s3) return undefined;
  // Both listings at once: one round trip to the store, not two (the history's is unused without a checkpoint).
  const [stacks, history] = await Promise.all([listKeys(s3, path.posix.join(".pulumi", "stacks", projectName, `${stackName}.json`)), listKeys(s3, `${dir}/`)]);
  if (!checkpoints.some((c) => stacks.includes(c))) return undefined;
  const names = historyNames(history.map((k) => k.slice(dir.length + 1)));
  if (!names) return undefined;
  return Promise.all(
    names.map(async (n) => {
      const o = await getObject(s3, `${dir}/${n}`);
      if (!o) throw new Error(`${dir}/${n} was listed but cannot be read`);
      return Buffer.from(o.text, "utf8");
    }),
  );
}

/** One update record's JSON (gzip-compressed or not); undefined when it is not JSON. */
export function historyRecordJson(raw: Buffer): unknown {
  try {
    return JSON.parse((raw[0] === 0x1f && raw[1] === 0x8b ? zlib.gunzipSync(raw) : raw).toString("utf8"));
  } catch {
    return undefined;
  }
}

/**
 * The history record names among a directory's entries, newest first (the names end in the update's start
 * in nanoseconds, so name order is time order, as Pulumi lists them); undefined when one is compressed in
 * a way this reader does not read (zstd).
 */
export function historyNames(entries: string[]): string[] | undefined {
  const names = entries.filter((n) => /\.history\.json(\.gz|\.zst)?$/.test(n));
  if (names.some((n) => n.endsWith(".zst"))) return undefined;
  return names.sort().reverse();
}

interface HistoryRecord {
  kind?: unknown;
  startTime?: unknown;
  message?: unknown;
  environment?: unknown;
  config?: unknown;
  version?: unknown;
  result?: unknown;
  endTime?: unknown;
  resourceChanges?: unknown;
}

/** A config value as the CLI's history shows it without `--show-secrets`. */
interface ShownConfigValue {
  value?: string;
  secret: boolean;
  objectValue?: unknown;
}

function holdsSecret(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(holdsSecret);
  if (v && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "secure" && typeof (v as { secure: unknown }).secure === "string") return true;
    return Object.values(v).some(holdsSecret);
  }
  return false;
}

/**
 * One config value of a history record, shown as the CLI shows it (Pulumi's `config.Value`): a string is
 * its value; `{secure}`, or anything holding one, is secret and shown without a value; any other JSON
 * (object, array, number, boolean) is an object value, given as its JSON text and parsed.
 */
export function shownConfigValue(v: unknown): ShownConfigValue {
  if (typeof v === "string") return { value: v, secret: false };
  if (holdsSecret(v)) return { secret: true };
  return { value: JSON.stringify(v), secret: false, objectValue: v };
}

/**
 * One history record (its bytes, gzip-compressed or not) as the Automation API's `UpdateSummary`;
 * undefined when it is not a record this reader knows.
 */
export function updateSummaryOf(raw: Buffer): UpdateSummary | undefined {
  const r = historyRecordJson(raw) as HistoryRecord | undefined;
  if (!r || typeof r.kind !== "string" || typeof r.startTime !== "number" || typeof r.result !== "string") return undefined;
  const config = r.config && typeof r.config === "object" ? Object.fromEntries(Object.entries(r.config).map(([k, v]) => [k, shownConfigValue(v)])) : {};
  const summary: Record<string, unknown> = {
    version: typeof r.version === "number" ? r.version : 0,
    kind: r.kind,
    startTime: new Date(r.startTime * 1000),
    message: typeof r.message === "string" ? r.message : "",
    environment: r.environment && typeof r.environment === "object" ? r.environment : {},
    config,
    result: r.result,
  };
  if (r.result !== "in-progress") {
    summary.endTime = new Date((typeof r.endTime === "number" ? r.endTime : 0) * 1000);
    summary.resourceChanges = r.resourceChanges && typeof r.resourceChanges === "object" ? r.resourceChanges : {};
  }
  return summary as unknown as UpdateSummary;
}
