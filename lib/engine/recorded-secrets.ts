import { decodeRecord } from "../records/history-record";
import { historyRecordJson, readHistoryFiles } from "./backend-history";

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
 * (`.pulumi/history/<project>/<stack>/*.history.json`, {@link readHistoryFiles}): the CLI's history hides
 * them (it shows only that a key was secret), and a rollback must re-apply the secret that ran, not the one
 * a file holds now. Nothing is decrypted. `file://` and `s3://` backends; undefined elsewhere or when the
 * record is not found.
 */
export async function recordedSecretCiphertexts(ref: UpdateRef): Promise<Record<string, string> | undefined> {
  for (const raw of (await readHistoryFiles(ref.backendUrl, ref.projectName, ref.stackName)) ?? []) {
    const h = historyRecordJson(raw) as HistoryFile | undefined;
    if (h && keyOf(h) === ref.updateKey) return ciphertexts(h);
  }
  return undefined;
}
