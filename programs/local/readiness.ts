import * as fs from "node:fs";
import * as path from "node:path";
import { PRIMARY } from "../../lib/planning/database";
import type { ReadinessFinding, ReadinessRequest } from "../types";

/** Where the local target's release artifacts are, as the program starts them (`artifact: hello-1.0.0`). */
const artifactsDir = path.join(__dirname, "..", "..", "..", "programs", "local", "artifacts");

/** What a version's `database` config names: the primary, its WAL archive and PostgreSQL's binaries. */
interface DatabaseConfig {
  url?: unknown;
  archiveDir?: string;
  pgBin?: string;
  restoreDir?: string;
}

/**
 * The local target's answer to "can the stack go back to this version now": the release's artifact is
 * there, and when the rollback restores the database, the base backup it starts from and the WAL archived
 * since it are there without a gap, with the live instance archiving (the restore window to now).
 */
export async function checkLocalReadiness(request: ReadinessRequest): Promise<ReadinessFinding[]> {
  const findings: ReadinessFinding[] = [];
  const artifact = String(request.config.artifact ?? "hello-1.0.0");
  const file = path.join(artifactsDir, `${artifact}.js`);
  findings.push(
    fs.existsSync(file)
      ? { leg: "artifacts", ok: true, detail: `artifact ${artifact} is at ${file}` }
      : { leg: "artifacts", ok: false, detail: `artifact ${artifact} is missing: ${file} does not exist` },
  );
  if (request.restore) findings.push(await restoreFinding(request, request.restore));
  return findings;
}

async function restoreFinding(request: ReadinessRequest, restore: NonNullable<ReadinessRequest["restore"]>): Promise<ReadinessFinding> {
  const db = (request.config.database ?? {}) as DatabaseConfig;
  if (typeof db.url !== "string" || !db.archiveDir || !db.pgBin) {
    return { leg: "database", ok: false, detail: "the stack's database config (a plain url, archiveDir, pgBin) is not readable without decrypting it: the restore path was not checked" };
  }
  const snapshots = (request.outputs.databaseSnapshots ?? {}) as Record<string, { takenAt?: string }>;
  const takenAt = snapshots[restore.snapshot]?.takenAt;
  if (!takenAt) return { leg: "database", ok: false, detail: `snapshot ${restore.snapshot} is not among the stack's snapshots` };
  const database = (request.outputs.database ?? {}) as { live?: string; url?: string };
  const live = database.live ?? PRIMARY;
  const instances = (request.outputs.databaseInstances ?? {}) as Record<string, { archiveDir?: string; timeline?: string }>;
  const restoreArchive = path.join(db.restoreDir ?? path.join(request.context.stateDir, "restores"), "wal-archive");
  const { restoreWindowOf } = require("./postgres") as typeof import("./postgres");
  const window = await restoreWindowOf({
    pgBin: db.pgBin,
    snapshotPath: path.join(request.context.stateDir, "snapshots", restore.snapshot),
    snapshotTakenAt: takenAt,
    archives: [db.archiveDir, ...(fs.existsSync(restoreArchive) ? [restoreArchive] : [])],
    sourceName: live,
    sourceUrl: database.url ?? db.url,
    sourceArchiveDir: instances[live]?.archiveDir ?? db.archiveDir,
    sourceTimeline: instances[live]?.timeline ?? "current",
  });
  if (!window.ok) return { leg: "database", ok: false, detail: window.problem };
  if (Date.parse(restore.time) < Date.parse(window.from) || Date.parse(restore.time) > Date.parse(window.to)) {
    return { leg: "database", ok: false, detail: `the restore's target time ${restore.time} is outside the window ${window.from} – ${window.to}`, window: { from: window.from, to: window.to } };
  }
  return {
    leg: "database",
    ok: true,
    detail:
      `restore from ${restore.snapshot} (base backup of ${takenAt}) to ${restore.time}: the base backup is there and the WAL archive is continuous` +
      (window.note ? `; ${window.note}` : ` to now, with ${live} archiving`),
    window: { from: window.from, to: window.to },
  };
}
