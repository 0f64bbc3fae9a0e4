/**
 * What a version was when it ran: the config the engine recorded for the newest successful update that
 * applied it. A rollback re-applies this, never the version file as it is on disk now (a file edited
 * since, or one that never ran, is a deploy with a deploy's checks), as Helm's rollback re-applies its
 * stored release and Kargo's stage goes back to the same immutable Freight.
 */
import { isDeepStrictEqual } from "node:util";
import { HistoryEntry, parseConfigJson, RecordedConfig } from "../records/history-record";
import type { VersionFile } from "../versions/schema";

/** A version as it ran, and how the file on disk differs from it. */
export interface RanVersion {
  /** The version with the config, secret generations and verification that ran; the rest from the file. */
  version: VersionFile;
  /** The revision of the update whose recorded config this is. */
  revision: number;
  /** One line per config key whose file value differs from what ran (values of secrets are never shown). */
  fileDiffers: string[];
}

/** The newest successful update that applied `version` with its config recorded. */
export function updateThatRan(history: HistoryEntry[], version: string): HistoryEntry | undefined {
  return history.find((h) => h.result === "succeeded" && h.to === version && h.config && ["deploy", "rollback", "restore", "update"].includes(h.op));
}

/** A recorded value as a version file writes it: structured config was recorded as JSON text. */
function asFileValue(recorded: RecordedConfig[string], onDisk: unknown): unknown {
  if (recorded.objectValue !== undefined) return recorded.objectValue;
  if (recorded.value === undefined) return undefined;
  if (typeof onDisk === "number" || typeof onDisk === "boolean" || (typeof onDisk === "object" && onDisk !== null)) {
    const parsed = parseConfigJson<unknown>(recorded.value);
    if (parsed !== undefined && typeof parsed === typeof onDisk) return parsed;
  }
  return recorded.value;
}

/**
 * The version named `name` as it ran on the stack: undefined when no successful update ever applied it.
 * `file` is the version file on disk (its description and database section are kept; its config, secrets
 * and verification are replaced by what the engine recorded). `stackConfig` is `stack.yaml`'s config now:
 * keys only it sets come from it, as for any apply; keys the version set are what ran.
 */
export function ranVersion(history: HistoryEntry[], file: VersionFile, project: string, stackConfig: Record<string, unknown>): RanVersion | undefined {
  const update = updateThatRan(history, file.version);
  if (!update?.config) return undefined;
  const qualify = (key: string) => (key.includes(":") ? key : `${project}:${key}`);
  const fileKeys = new Map(Object.keys(file.config).map((k) => [qualify(k), k]));
  const stackKeys = new Set(Object.keys(stackConfig).map(qualify));
  const config: VersionFile["config"] = {};
  const secretDiffers: string[] = [];
  const recorded: RecordedConfig = update.config;
  for (const [key, value] of Object.entries(recorded)) {
    if (key.startsWith("stackpin:")) continue;
    // A key stack.yaml sets and the version did not is a stack-level setting: today's stack.yaml gives it.
    if (stackKeys.has(key) && !fileKeys.has(key)) continue;
    const name = fileKeys.get(key) ?? (key.startsWith(`${project}:`) ? key.slice(project.length + 1) : key);
    if (value.secret) {
      // The ciphertext that ran, when the world reader found it in the backend's update record (the CLI's
      // history shows only that the key was secret). An unchanged file holds the very same ciphertext.
      const onDisk = file.config[name] as { secure?: string } | undefined;
      if (value.value) {
        config[name] = { secure: value.value };
        if (onDisk?.secure !== value.value) secretDiffers.push(`${name}: the file's secret is not the one that ran`);
      } else if (onDisk !== undefined) {
        config[name] = onDisk as VersionFile["config"][string];
        secretDiffers.push(`${name}: the ciphertext that ran could not be read from the backend; the file's is used`);
      }
      continue;
    }
    config[name] = asFileValue(value, file.config[name]) as VersionFile["config"][string];
  }
  const fileDiffers: string[] = [...secretDiffers];
  for (const key of new Set([...Object.keys(config), ...Object.keys(file.config)])) {
    const ran = config[key];
    const now = file.config[key];
    const secret = recorded[qualify(key)]?.secret || (typeof now === "object" && now !== null && "secure" in now);
    if (secret) continue;
    if (ran === undefined) fileDiffers.push(`${key}: in the file, not in what ran`);
    else if (now === undefined) fileDiffers.push(`${key}: ran, not in the file`);
    else if (!isDeepStrictEqual(ran, now)) fileDiffers.push(`${key}: ran ${JSON.stringify(ran)}, the file says ${JSON.stringify(now)}`);
  }
  // The generations that ran, as history already parsed them from the update's `stackpin:secrets`.
  const secrets = update.secretGenerations
    ? Object.fromEntries(Object.entries(update.secretGenerations).map(([k, g]) => [k, { generation: g }]))
    : file.secrets;
  // What ran carries generations raised by later rotations (forward-only): only a file asking for more is an edit.
  for (const [k, s] of Object.entries(file.secrets)) {
    const ran = secrets[k]?.generation;
    if (ran === undefined || s.generation > ran) fileDiffers.push(`secrets.${k}: ran at generation ${ran ?? "(none)"}, the file says ${s.generation}`);
  }
  const verify = parseConfigJson<VersionFile["verify"]>(recorded["stackpin:verify"]?.value) ?? file.verify;
  if (!isDeepStrictEqual(verify, file.verify)) fileDiffers.push("verify: the file's verification settings differ from what ran");
  // In the file's key order (what ran was applied from it, and programs may serialise the config as is).
  const ordered: VersionFile["config"] = {};
  for (const key of [...Object.keys(file.config), ...Object.keys(config)]) if (key in config && !(key in ordered)) ordered[key] = config[key];
  return { version: { ...file, config: ordered, secrets, verify }, revision: update.revision, fileDiffers: fileDiffers.sort() };
}
