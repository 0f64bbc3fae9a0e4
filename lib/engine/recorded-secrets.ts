import * as fs from "node:fs";
import * as path from "node:path";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { decodeRecord } from "../records/history-record";
import { getObject, s3LocationOf } from "../records/s3-backend";

/** Which update of which stack, by the key stackpin's records use (its record id, else `t<start seconds>`). */
export interface UpdateRef {
  backendUrl: string;
  projectName: string;
  stackName: string;
  updateKey: string;
}

interface HistoryFile {
  message?: string;
  startTime?: number | string;
  config?: Record<string, unknown>;
}

function keyOf(h: HistoryFile): string {
  const id = decodeRecord(h.message)?.id;
  if (id) return id;
  const t = typeof h.startTime === "number" ? h.startTime : Date.parse(String(h.startTime)) / 1000;
  return `t${t}`;
}

function ciphertexts(h: HistoryFile): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h.config ?? {})) {
    if (v && typeof v === "object" && typeof (v as { secure?: unknown }).secure === "string") out[k] = (v as { secure: string }).secure;
  }
  return out;
}

/**
 * The ciphertexts of the secret config an update ran with, read from the backend's own update record
 * (`.pulumi/history/<project>/<stack>/*.history.json`): the CLI's history hides them (it shows only that a
 * key was secret), and a rollback must re-apply the secret that ran, not the one a file holds now. Nothing
 * is decrypted. `file://` and `s3://` backends; undefined elsewhere or when the record is not found.
 */
export async function recordedSecretCiphertexts(ref: UpdateRef): Promise<Record<string, string> | undefined> {
  const dir = path.posix.join(".pulumi", "history", ref.projectName, ref.stackName);
  if (ref.backendUrl.startsWith("file://")) {
    const full = path.join(ref.backendUrl.slice("file://".length), dir);
    if (!fs.existsSync(full)) return undefined;
    // Newest first: the file names end in the update's start time.
    for (const name of fs.readdirSync(full).filter((f) => f.endsWith(".history.json")).sort().reverse()) {
      const h = JSON.parse(fs.readFileSync(path.join(full, name), "utf8")) as HistoryFile;
      if (keyOf(h) === ref.updateKey) return ciphertexts(h);
    }
    return undefined;
  }
  const s3 = s3LocationOf(ref.backendUrl);
  if (!s3) return undefined;
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${s3.prefix}${dir}/`, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((o) => o.Key ?? "").filter((k) => k.endsWith(".history.json")));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  for (const key of keys.sort().reverse()) {
    const text = (await getObject(s3, key.slice(s3.prefix.length)))?.text;
    if (!text) continue;
    const h = JSON.parse(text) as HistoryFile;
    if (keyOf(h) === ref.updateKey) return ciphertexts(h);
  }
  return undefined;
}
