import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { getObject, listKeys, s3LocationOf } from "../records/s3-backend";
import { recordBackendRead, timingEnabled } from "./cli-timing";

/** A checkpoint's deployment as `pulumi stack export` prints it (`{version, deployment}`), secrets still encrypted. */
export interface ExportedDeployment {
  version: number;
  deployment: Record<string, unknown>;
}

/**
 * A stack's checkpoint read from a `file://` or `s3://` backend's own file
 * (`.pulumi/stacks/<project>/<stack>.json`), as `pulumi stack export` gives it without `--show-secrets`:
 * the newest deployment, every secret in it still ciphertext. No Pulumi CLI is started (on a busy machine
 * that is most of a second), and nothing is decrypted: the CLI is not asked for the passphrase's key.
 *
 * Undefined whenever the CLI should answer instead, because it says something this reader would not:
 * another kind of backend; no checkpoint (no such stack, or the older layout without project folders);
 * more than one stored form of it (Pulumi then reads the newest; plain, gzip and zstd side by side);
 * a zstd or unrecognised encoding, a checkpoint version other than 3, text that is not JSON, or (on
 * `file://`) an attributes file the CLI would fail to load (a write killed before its rename; the CLI's
 * error starts the repair).
 */
export async function readBackendCheckpoint(backendUrl: string, projectName: string, stackName: string): Promise<ExportedDeployment | undefined> {
  const started = performance.now();
  const read = await readCheckpointBytes(backendUrl, projectName, stackName).catch(() => undefined);
  const exported = read && exportedOf(read);
  if (exported && timingEnabled()) recordBackendRead(`checkpoint (${Math.round(read.length / 1024)} KiB)`, performance.now() - started);
  return exported;
}

/** The stored forms of a stack's checkpoint, as Pulumi's DIY backend names them. */
function checkpointKeys(projectName: string, stackName: string): string[] {
  const plain = path.posix.join(".pulumi", "stacks", projectName, `${stackName}.json`);
  return [plain, `${plain}.gz`, `${plain}.zst`];
}

async function readCheckpointBytes(backendUrl: string, projectName: string, stackName: string): Promise<Buffer | undefined> {
  const keys = checkpointKeys(projectName, stackName);
  if (backendUrl.startsWith("file://")) {
    const root = backendUrl.slice("file://".length);
    const present = keys.filter((k) => fs.existsSync(path.join(root, k)));
    if (present.length !== 1 || present[0].endsWith(".zst")) return undefined;
    const file = path.join(root, present[0]);
    // gocloud's fileblob refuses an object whose attributes file it cannot parse; so does the CLI.
    if (fs.existsSync(`${file}.attrs`)) JSON.parse(fs.readFileSync(`${file}.attrs`, "utf8"));
    return fs.readFileSync(file);
  }
  const s3 = s3LocationOf(backendUrl);
  if (!s3) return undefined;
  const listed = await listKeys(s3, keys[0]);
  const present = keys.filter((k) => listed.includes(k));
  // Objects are read as text here: only the plain JSON form.
  if (present.length !== 1 || present[0] !== keys[0]) return undefined;
  const object = await getObject(s3, keys[0]);
  return object ? Buffer.from(object.text, "utf8") : undefined;
}

/** A stored checkpoint (`{version: 3, checkpoint: {latest}}`, maybe gzip-compressed) as `stack export` shows it. */
export function exportedOf(raw: Buffer): ExportedDeployment | undefined {
  try {
    const text = (raw[0] === 0x1f && raw[1] === 0x8b ? zlib.gunzipSync(raw) : raw).toString("utf8");
    const stored = JSON.parse(text) as { version?: unknown; checkpoint?: { latest?: Record<string, unknown> | null } };
    if (stored.version !== 3 || typeof stored.checkpoint !== "object" || stored.checkpoint === null) return undefined;
    return { version: 3, deployment: stored.checkpoint.latest ?? {} };
  } catch {
    return undefined;
  }
}
