import * as pulumi from "@pulumi/pulumi";
import type { MigrationStep } from "../../lib/planning/database";
import { refusalMarker } from "../../lib/engine/refusal";

/**
 * PostgreSQL as declarative resources for the local target: a snapshot is a base backup
 * (pg_basebackup), a point-in-time restore is a new PostgreSQL instance made from a base backup and the
 * archived WAL replayed up to a recovery target time, and the schema is a migration resource. Failures
 * the user can act on start with a `[stackpin:<code>]` marker that stackpin turns into its typed errors.
 */

/** Where PostgreSQL is, for every database resource. */
export interface PostgresTarget {
  /**
   * The primary's URL, e.g. postgres://postgres@127.0.0.1:5432/app (a `secure:` value reaches the program
   * decrypted). A password in it is taken out and handled as {@link password} is.
   */
  url: string;
  /** The password of the URL's user (a `secure:` value in the config, decrypted here). */
  password?: string;
  /** The WAL archive directory (`archive_command` copies there). */
  archiveDir: string;
  /** The directory with pg_ctl and pg_basebackup, e.g. /usr/lib/postgresql/15/bin. */
  pgBin: string;
  /** Where restored instances live; must be reachable by the postgres user. Default: the stack's state dir. */
  restoreDir?: string;
}

// Dynamic provider code runs where bare module names do not resolve: reach the pg driver by path.
const pgModule = require.resolve("pg");

/** `url` (which never carries a password here) with `password` in its user info, for the pg driver in this process. */
function connectionString(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const u = new URL(url);
  u.password = encodeURIComponent(password);
  return u.toString();
}

/** `url` as it may be shown: whatever password it might carry masked. */
function shownUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^\s:@/?#]*:)[^\s@/?#]*@/i, "$1[redacted]@");
}

/**
 * Runs a PostgreSQL program; as root, it runs as the postgres user, which PostgreSQL requires. A password
 * reaches it in a passfile of its own (mode 0600, `PGPASSFILE`, removed after), never on its command line.
 */
function pgRun(pgBin: string, program: string, args: string[], options: { asPostgres?: boolean; password?: string } = {}): string {
  const cp = require("node:child_process") as typeof import("node:child_process");
  const fs = require("node:fs") as typeof import("node:fs");
  const os = require("node:os") as typeof import("node:os");
  const p = require("node:path") as typeof import("node:path");
  const bin = p.join(pgBin, program);
  const asPostgres = options.asPostgres && process.getuid?.() === 0;
  const [cmd, argv] = asPostgres ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  let passDir: string | undefined;
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.PGPASSWORD;
  if (options.password !== undefined) {
    // The postgres user could not read our 0600 file: programs run as it are given no password.
    if (asPostgres) throw new Error(`${program} runs as the postgres user and is never given a password`);
    passDir = fs.mkdtempSync(p.join(os.tmpdir(), "stackpin-pgpass-"));
    const file = p.join(passDir, "pgpass");
    // Any host, port, database and user: the file is this one program's. `:` and `\` are escaped.
    fs.writeFileSync(file, `*:*:*:*:${options.password.replace(/[\\:]/g, (c) => `\\${c}`)}\n`, { mode: 0o600 });
    env.PGPASSFILE = file;
  }
  try {
    // cwd "/": the postgres user may not be allowed into the caller's working directory.
    const r = cp.spawnSync(cmd, argv, { encoding: "utf8", timeout: 300_000, cwd: "/", env });
    if (r.status !== 0) throw new Error(`${program} failed (${r.status ?? r.signal}): ${shownUrl((r.stderr || r.stdout || String(r.error)).trim())}`);
    return r.stdout;
  } finally {
    if (passDir) fs.rmSync(passDir, { recursive: true, force: true });
  }
}

async function query<T = Record<string, unknown>>(url: string, password: string | undefined, sql: string, params: unknown[] = []): Promise<T[]> {
  const { Client } = require(pgModule) as typeof import("pg");
  const client = new Client({ connectionString: connectionString(url, password), connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`${refusalMarker("database-unavailable")} cannot connect to ${shownUrl(url)}: ${(err as Error).message}`);
  }
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

function dirSize(dir: string): number {
  const fs = require("node:fs") as typeof import("node:fs");
  const p = require("node:path") as typeof import("node:path");
  let total = 0;
  for (const f of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const st = fs.statSync(p.join(dir, f));
    if (st.isFile()) total += st.size;
  }
  return total;
}

interface SnapshotProps {
  /** The instance the backup is taken from: the primary, or the restored instance live then (no password in it). */
  url: string;
  /** The password of the URL's user (a secret in the stack's state). */
  password?: string;
  source: string;
  pgBin: string;
  name: string;
  version: string;
  dir: string;
}

const snapshotProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: SnapshotProps) {
    const fs = require("node:fs") as typeof import("node:fs");
    const p = require("node:path") as typeof import("node:path");
    const path = p.join(inputs.dir, inputs.name);
    fs.rmSync(path, { recursive: true, force: true });
    fs.mkdirSync(inputs.dir, { recursive: true });
    await query(inputs.url, inputs.password, "select 1");
    const started = Date.now();
    pgRun(inputs.pgBin, "pg_basebackup", ["-d", inputs.url, "-D", path, "-Fp", "-X", "stream", "-c", "fast", "--no-sync"], { password: inputs.password });
    // The backup is consistent as of its end: the earliest time a restore from it can target.
    const takenAt = new Date().toISOString();
    return {
      id: path,
      outs: { ...inputs, path, takenAt, durationMs: Date.now() - started, sizeBytes: dirSize(path) },
    };
  },
  async diff(_id: string, olds: SnapshotProps, news: SnapshotProps) {
    // A snapshot is never retaken: a later restore or a moved primary does not change what it holds.
    const replaces = olds.name !== news.name || olds.dir !== news.dir ? ["name"] : [];
    return { changes: replaces.length > 0, replaces };
  },
  async delete(id: string) {
    const fs = require("node:fs") as typeof import("node:fs");
    fs.rmSync(id, { recursive: true, force: true });
  },
};

/** A base backup of the primary, named after the version it was taken before. */
export class PostgresSnapshot extends pulumi.dynamic.Resource {
  declare readonly takenAt: pulumi.Output<string>;
  declare readonly sizeBytes: pulumi.Output<number>;
  declare readonly durationMs: pulumi.Output<number>;
  declare readonly path: pulumi.Output<string>;
  constructor(
    name: string,
    args: { url: pulumi.Input<string>; password?: pulumi.Input<string>; source: string; pgBin: string; name: string; version: string; dir: string },
    opts?: pulumi.CustomResourceOptions,
  ) {
    super(snapshotProvider, name, { ...args, path: undefined, takenAt: undefined, sizeBytes: undefined, durationMs: undefined }, opts, "stackpin-local", "PostgresSnapshot");
  }
}

interface RestoreProps {
  pgBin: string;
  /** The base backup: its directory and when it ended. */
  snapshotPath: string;
  snapshotTakenAt: string;
  /** The recovery target; the snapshot's own time means "stop as soon as the backup is consistent". */
  time: string;
  dataDir: string;
  database: string;
  /** Where this instance archives its WAL (shared by every restored instance of the stack). */
  archiveDir: string;
  /** Every WAL archive of the stack, searched in order by `restore_command`. */
  archives: string[];
  /** The instance whose history this restore replays (live at `time`), and its archive. */
  sourceName: string;
  sourceUrl: string;
  sourceArchiveDir: string;
  /** The password of the URLs' user: every instance is restored from the primary's backups, roles included. */
  password?: string;
  /** That instance's timeline: a number, or `current` (the base backup's own timeline). */
  sourceTimeline: string;
}

const hex8 = (n: number | bigint) => n.toString(16).toUpperCase().padStart(8, "0");
const lsnOf = (text: string) => {
  const [hi, lo] = text.split("/");
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
};
const segmentName = (tli: number, segno: bigint) => `${hex8(tli)}${hex8(segno / 256n)}${hex8(segno % 256n)}`;

/** The first archive holding `file`, or undefined. */
function findArchived(archives: string[], file: string): string | undefined {
  const fs = require("node:fs") as typeof import("node:fs");
  const p = require("node:path") as typeof import("node:path");
  return archives.map((a) => p.join(a, file)).find((f) => fs.existsSync(f));
}

/**
 * The WAL files a recovery from `props`' base backup to its timeline reads, in order, as far as the
 * archives hold them without a gap; or the reason the path cannot even start. Timelines are followed
 * as PostgreSQL does: each `.history` file gives the points where a timeline branched from its parent.
 */
function archivedPath(props: RestoreProps): { files: string[]; problem?: string } {
  const fs = require("node:fs") as typeof import("node:fs");
  const p = require("node:path") as typeof import("node:path");
  const label = fs.readFileSync(p.join(props.snapshotPath, "backup_label"), "utf8");
  const start = lsnOf(/START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/.exec(label)![1]);
  const startTli = Number(/START TIMELINE: (\d+)/.exec(label)![1]);
  const targetTli = props.sourceTimeline === "current" ? startTli : Number(props.sourceTimeline);
  // [timeline, first segment it is read from], oldest first.
  const path: Array<[number, bigint]> = [[targetTli, 0n]];
  if (targetTli !== startTli) {
    const history = findArchived(props.archives, `${hex8(targetTli)}.history`);
    if (!history) return { files: [], problem: `the history file of timeline ${targetTli} (${props.sourceName}) is in no WAL archive` };
    path.length = 0;
    let begin = 0n;
    for (const line of fs.readFileSync(history, "utf8").split("\n")) {
      const m = /^(\d+)\s+([0-9A-F]+\/[0-9A-F]+)/.exec(line.trim());
      if (!m) continue;
      path.push([Number(m[1]), begin]);
      begin = lsnOf(m[2]) / (16n * 1024n * 1024n);
    }
    path.push([targetTli, begin]);
  }
  const tliFor = (segno: bigint) => path.filter(([, b]) => b <= segno).pop()![0];
  const files: string[] = [];
  // 16 MB segments, PostgreSQL's default.
  for (let segno = start / (16n * 1024n * 1024n); ; segno++) {
    const file = segmentName(tliFor(segno), segno);
    if (!findArchived(props.archives, file)) {
      const lastBegin = path[path.length - 1][1];
      if (segno < lastBegin) return { files, problem: `WAL segment ${file} (on the way to timeline ${targetTli} of ${props.sourceName}) is in no WAL archive` };
      return { files };
    }
    files.push(file);
  }
}

/** The time of the newest commit in the archived `files` (read with pg_waldump), or undefined. */
function newestCommit(props: RestoreProps, files: string[]): string | undefined {
  const cp = require("node:child_process") as typeof import("node:child_process");
  for (const file of files.slice(-3).reverse()) {
    const r = cp.spawnSync(require("node:path").join(props.pgBin, "pg_waldump"), [findArchived(props.archives, file)!], { encoding: "utf8", cwd: "/" });
    const stamps = [...(r.stdout ?? "").matchAll(/desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC/g)].map((m) => m[1]);
    if (stamps.length) return new Date(`${stamps[stamps.length - 1].replace(" ", "T")}Z`).toISOString();
  }
  return undefined;
}

/**
 * What the preflight finds wrong with a restore before anything changes, from what is really there:
 * the base backup, the archived WAL on the path to the source's timeline, and the source itself (a
 * running source archives up to now when the restore starts; a stopped one only as far as its archive).
 */
async function checkRestore(props: RestoreProps): Promise<string | undefined> {
  const fs = require("node:fs") as typeof import("node:fs");
  const refuse = (why: string) => `${refusalMarker("restore-impossible")} ${why}`;
  if (!fs.existsSync(props.snapshotPath)) return refuse(`the base backup ${props.snapshotPath} is missing`);
  // A restored instance's archive may hold only its timeline's history file until its first segment fills.
  const own = fs.existsSync(props.sourceArchiveDir) ? fs.readdirSync(props.sourceArchiveDir).filter((f) => /^[0-9A-F]{24}$|^[0-9A-F]{8}\.history$/.test(f)) : [];
  if (own.length === 0) return refuse(`the WAL archive ${props.sourceArchiveDir} is missing or empty`);
  if (new Date(props.time) < new Date(props.snapshotTakenAt)) {
    return refuse(`${props.time} is outside the recoverable window: the base backup ends at ${props.snapshotTakenAt}`);
  }
  if (new Date(props.time) > new Date()) return refuse(`${props.time} is in the future`);
  if (props.time === props.snapshotTakenAt) return undefined;
  if (!fs.existsSync(require("node:path").join(props.snapshotPath, "backup_label"))) return refuse(`${props.snapshotPath} is not a base backup (no backup_label)`);
  const path = archivedPath(props);
  if (path.problem) return refuse(path.problem);
  const state = await query<{ mode: string; failing: boolean; failure: string | null }>(
    props.sourceUrl,
    props.password,
    "select current_setting('archive_mode') as mode, coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false) as failing, last_failed_wal as failure from pg_stat_archiver",
  ).catch(() => undefined);
  if (state) {
    if (state[0].mode === "off") return refuse(`${props.sourceName} does not archive its WAL (archive_mode is off)`);
    if (state[0].failing) return refuse(`${props.sourceName} fails to archive its WAL (last failure: ${state[0].failure})`);
    return undefined;
  }
  // The source is down: the window ends at the newest commit its archive holds.
  const newest = newestCommit(props, path.files);
  if (!newest || new Date(newest) <= new Date(props.time)) {
    return refuse(`${props.sourceName} is not running and the WAL archived from it reaches only ${newest ?? "its base backup"}, not ${props.time}`);
  }
  return undefined;
}

/** What {@link restoreWindowOf} reads: a base backup, the instance live now, and the WAL archives. */
export type WindowProps = Pick<RestoreProps, "pgBin" | "snapshotPath" | "snapshotTakenAt" | "archives" | "sourceName" | "sourceUrl" | "sourceArchiveDir" | "password" | "sourceTimeline">;

/** The point-in-time restore window of a base backup, as it is now, or why there is none. */
export type RestoreWindow = { ok: true; from: string; to: string; note?: string } | { ok: false; problem: string };

/**
 * How far a restore from `props`' base backup can reach now, from what is really there and changing
 * nothing: the base backup, then every WAL segment from its start on the way to the live instance's
 * timeline, without a gap before the newest segment archived (a segment missing in the middle ends the
 * replay there, however many come after it), and the live instance's archiver (on, not failing). A
 * running instance archives up to now; one that cannot be asked, only as far as its newest archived commit.
 */
export async function restoreWindowOf(props: WindowProps): Promise<RestoreWindow> {
  const fs = require("node:fs") as typeof import("node:fs");
  const p = require("node:path") as typeof import("node:path");
  if (!fs.existsSync(props.snapshotPath)) return { ok: false, problem: `the base backup ${props.snapshotPath} is missing` };
  if (!fs.existsSync(p.join(props.snapshotPath, "backup_label"))) return { ok: false, problem: `${props.snapshotPath} is not a base backup (no backup_label)` };
  const own = fs.existsSync(props.sourceArchiveDir) ? fs.readdirSync(props.sourceArchiveDir).filter((f) => /^[0-9A-F]{24}$|^[0-9A-F]{8}\.history$/.test(f)) : [];
  if (own.length === 0) return { ok: false, problem: `the WAL archive ${props.sourceArchiveDir} is missing or empty` };
  const walk = archivedPath({ ...props, time: new Date().toISOString(), dataDir: "", database: "", archiveDir: props.sourceArchiveDir } as RestoreProps);
  if (walk.problem) return { ok: false, problem: walk.problem };
  // The segment after the last one the walk found, and any archived after it on the same timeline: a gap.
  const segno = (f: string) => BigInt(`0x${f.slice(8, 16)}`) * 256n + BigInt(`0x${f.slice(16, 24)}`);
  const label = fs.readFileSync(p.join(props.snapshotPath, "backup_label"), "utf8");
  const last = walk.files[walk.files.length - 1];
  const tli = last ? Number.parseInt(last.slice(0, 8), 16) : Number(/START TIMELINE: (\d+)/.exec(label)![1]);
  const next = last ? segno(last) + 1n : lsnOf(/START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/.exec(label)![1]) / (16n * 1024n * 1024n);
  const later = props.archives
    .flatMap((a) => (fs.existsSync(a) ? fs.readdirSync(a) : []))
    .filter((f) => /^[0-9A-F]{24}$/.test(f) && Number.parseInt(f.slice(0, 8), 16) === tli && segno(f) > next)
    .sort();
  if (later.length) {
    return {
      ok: false,
      problem: `WAL segment ${segmentName(tli, next)} is in no WAL archive (${props.archives.join(", ")}) while ${later.length} later segment${later.length === 1 ? " is" : "s are"} (${later[0]}${later.length > 1 ? ` … ${later[later.length - 1]}` : ""}): a restore from ${p.basename(props.snapshotPath)} cannot replay past the gap`,
    };
  }
  const state = await query<{ mode: string; failing: boolean; failure: string | null }>(
    props.sourceUrl,
    props.password,
    "select current_setting('archive_mode') as mode, coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false) as failing, last_failed_wal as failure from pg_stat_archiver",
  ).catch((err: Error) => err);
  if (!(state instanceof Error)) {
    if (state[0].mode === "off") return { ok: false, problem: `${props.sourceName} does not archive its WAL (archive_mode is off)` };
    if (state[0].failing) return { ok: false, problem: `${props.sourceName} fails to archive its WAL (last failure: ${state[0].failure})` };
    return { ok: true, from: props.snapshotTakenAt, to: new Date().toISOString() };
  }
  const newest = newestCommit(props as RestoreProps, walk.files);
  if (!newest) return { ok: false, problem: `${props.sourceName} cannot be asked (${state.message.replace(/^\[stackpin:[a-z-]+\] /, "")}) and its archived WAL holds no commit after the base backup` };
  return { ok: true, from: props.snapshotTakenAt, to: newest, note: `${props.sourceName} cannot be asked (${state.message.replace(/^\[stackpin:[a-z-]+\] /, "")}): the window ends at its newest archived commit` };
}

function removeInstance(pgBin: string, dataDir: string) {
  const fs = require("node:fs") as typeof import("node:fs");
  if (fs.existsSync(`${dataDir}/postmaster.pid`)) {
    try {
      pgRun(pgBin, "pg_ctl", ["-D", dataDir, "-m", "fast", "-w", "stop"], { asPostgres: true });
    } catch {
      // not running
    }
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.rmSync(`${dataDir}.log`, { force: true });
}

async function waitFor(what: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await what()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const restoreProvider: pulumi.dynamic.ResourceProvider = {
  async check(olds: RestoreProps, news: RestoreProps) {
    // Only a restore still to be made is checked: one that runs already stays, whatever became of its base backup.
    const problem = olds?.dataDir ? undefined : await checkRestore(news);
    return { inputs: news, failures: problem ? [{ property: "time", reason: problem }] : [] };
  },
  async create(inputs: RestoreProps) {
    const fs = require("node:fs") as typeof import("node:fs");
    const net = require("node:net") as typeof import("node:net");
    const p = require("node:path") as typeof import("node:path");
    const cp = require("node:child_process") as typeof import("node:child_process");
    const problem = await checkRestore(inputs);
    if (problem) throw new Error(problem);
    const started = Date.now();
    const immediate = inputs.time === inputs.snapshotTakenAt;
    if (!immediate) {
      // Make the source archive everything up to now: a commit after the target time (recovery stops at
      // the first one after it), then a segment switch, and wait until the archive holds that segment.
      const switched = await (async () => {
        await query(inputs.sourceUrl, inputs.password, "select txid_current()");
        const [{ wal }] = await query<{ wal: string }>(inputs.sourceUrl, inputs.password, "select pg_walfile_name(pg_switch_wal()) as wal");
        return wal;
      })().catch(() => undefined);
      if (switched && !(await waitFor(() => fs.existsSync(p.join(inputs.sourceArchiveDir, switched)), 60_000))) {
        throw new Error(`${refusalMarker("restore-impossible")} ${inputs.sourceName} did not archive WAL segment ${switched} to ${inputs.sourceArchiveDir} within 60 s`);
      }
    }
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once("error", reject);
      srv.listen(0, "127.0.0.1", () => {
        const a = srv.address() as import("node:net").AddressInfo;
        srv.close(() => resolve(a.port));
      });
    });
    const asRoot = process.getuid?.() === 0;
    removeInstance(inputs.pgBin, inputs.dataDir);
    fs.mkdirSync(p.dirname(inputs.dataDir), { recursive: true });
    fs.mkdirSync(inputs.archiveDir, { recursive: true });
    if (asRoot) cp.execFileSync("chown", ["postgres:postgres", inputs.archiveDir]);
    fs.cpSync(inputs.snapshotPath, inputs.dataDir, { recursive: true });
    fs.rmSync(p.join(inputs.dataDir, "standby.signal"), { force: true });
    fs.writeFileSync(p.join(inputs.dataDir, "recovery.signal"), "");
    // A base backup of a restored instance carries that instance's recovery settings: drop them, so
    // exactly one recovery target is set.
    const auto = p.join(inputs.dataDir, "postgresql.auto.conf");
    const inherited = fs.existsSync(auto)
      ? fs.readFileSync(auto, "utf8").split("\n").filter((l) => !/^\s*(port|listen_addresses|unix_socket_directories|archive_|restore_command|recovery_target)/.test(l))
      : [];
    const search = inputs.archives.map((a) => `"${a}"`).join(" ");
    fs.writeFileSync(
      auto,
      [
        ...inherited.filter((l) => l.trim()),
        `port = ${port}`,
        `listen_addresses = '127.0.0.1'`,
        // TCP only: a socket path is limited to 107 bytes, and a project's restore directory is often deeper.
        `unix_socket_directories = ''`,
        // Restored instances archive too, each on its own timeline, so a later restore can reach any moment
        // they were live. A segment of an older timeline that is already there is not copied again.
        `archive_mode = on`,
        `archive_command = 'test -f ${inputs.archiveDir}/%f || (cp %p ${inputs.archiveDir}/%f.tmp && mv ${inputs.archiveDir}/%f.tmp ${inputs.archiveDir}/%f)'`,
        `restore_command = 'for d in ${search}; do if test -f "$d/%f"; then cp "$d/%f" "%p"; exit $?; fi; done; exit 1'`,
        immediate ? `recovery_target = 'immediate'` : `recovery_target_time = '${inputs.time.replace("T", " ").replace(/Z$/, "+00")}'`,
        `recovery_target_timeline = '${inputs.sourceTimeline}'`,
        `recovery_target_action = 'promote'`,
        "",
      ].join("\n"),
    );
    fs.chmodSync(inputs.dataDir, 0o700);
    if (asRoot) cp.execFileSync("chown", ["-R", "postgres:postgres", inputs.dataDir]);
    const log = `${inputs.dataDir}.log`;
    fs.writeFileSync(log, "");
    if (asRoot) cp.execFileSync("chown", ["postgres:postgres", log]);
    // A restore that cannot finish ends clean: the instance is stopped and removed, the app stays where it was.
    const fail = (why: string): never => {
      const text = fs.existsSync(log) ? fs.readFileSync(log, "utf8") : "";
      removeInstance(inputs.pgBin, inputs.dataDir);
      if (/recovery ended before configured recovery target was reached/.test(text)) {
        throw new Error(`${refusalMarker("restore-impossible")} the WAL archived from ${inputs.sourceName} does not reach ${inputs.time}`);
      }
      throw new Error(`${refusalMarker("restore-impossible")} the restored PostgreSQL ${why}: ${text.trim().split("\n").slice(-4).join(" | ")}`);
    };
    try {
      pgRun(inputs.pgBin, "pg_ctl", ["-D", inputs.dataDir, "-l", log, "-w", "-t", "300", "start"], { asPostgres: true });
    } catch (err) {
      fail(`did not start (${(err as Error).message.split("\n")[0]})`);
    }
    // The source's user (and password: the roles come with the base backup), on the new instance.
    const user = URL.canParse(inputs.sourceUrl) ? new URL(inputs.sourceUrl).username || "postgres" : "postgres";
    const url = `postgres://${user}@127.0.0.1:${port}/${inputs.database}`;
    // pg_ctl returns once the server takes read-only connections; recovery goes on until it promotes,
    // or the server stops when the WAL runs out: watch for either.
    const alive = () => fs.existsSync(p.join(inputs.dataDir, "postmaster.pid"));
    let promoted = false;
    const settled = await waitFor(async () => {
      if (!alive()) return true;
      const rows = await query<{ r: boolean }>(url, inputs.password, "select pg_is_in_recovery() as r").catch(() => undefined);
      promoted = rows?.[0].r === false;
      return promoted;
    }, 300_000);
    if (!promoted) fail(settled ? "stopped during recovery" : "was still recovering after 300 s");
    const [{ wal }] = await query<{ wal: string }>(url, inputs.password, "select pg_walfile_name(pg_current_wal_lsn()) as wal");
    const timeline = parseInt(wal.slice(0, 8), 16);
    // Its history file in the archive is what lets later restores follow this timeline, and what keeps
    // the next restore from picking the same timeline number.
    if (!(await waitFor(() => fs.existsSync(p.join(inputs.archiveDir, `${hex8(timeline)}.history`)), 60_000))) {
      fail(`did not archive the history file of its timeline ${timeline}`);
    }
    return {
      id: inputs.dataDir,
      outs: { ...inputs, port, restoredUrl: url, timeline: String(timeline), liveFrom: new Date().toISOString(), durationMs: Date.now() - started },
    };
  },
  async diff(_id: string, olds: RestoreProps, news: RestoreProps) {
    // A restored instance is never remade: its name (and data directory) says what it holds. Inputs that
    // follow the rest of the stack (more archives, a moved source) leave it as it is.
    const replaces = olds.dataDir !== news.dataDir ? ["dataDir"] : [];
    return { changes: replaces.length > 0, replaces };
  },
  async delete(id: string, props: RestoreProps) {
    removeInstance(props.pgBin, id);
  },
};

/** A PostgreSQL instance restored from a base backup plus archived WAL, up to `time`, on a timeline of its own. */
export class PointInTimeRestore extends pulumi.dynamic.Resource {
  declare readonly restoredUrl: pulumi.Output<string>;
  declare readonly port: pulumi.Output<number>;
  declare readonly timeline: pulumi.Output<string>;
  declare readonly liveFrom: pulumi.Output<string>;
  declare readonly durationMs: pulumi.Output<number>;
  constructor(
    name: string,
    args: {
      pgBin: string;
      snapshotPath: pulumi.Input<string>;
      snapshotTakenAt: pulumi.Input<string>;
      time: string;
      dataDir: string;
      database: string;
      archiveDir: string;
      archives: string[];
      sourceName: string;
      sourceUrl: pulumi.Input<string>;
      sourceArchiveDir: string;
      password?: pulumi.Input<string>;
      sourceTimeline: pulumi.Input<string>;
    },
    opts?: pulumi.CustomResourceOptions,
  ) {
    super(restoreProvider, name, { ...args, port: undefined, restoredUrl: undefined, timeline: undefined, liveFrom: undefined, durationMs: undefined }, opts, "stackpin-local", "PointInTimeRestore");
  }
}

const archiveProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: { dir: string }) {
    const fs = require("node:fs") as typeof import("node:fs");
    fs.mkdirSync(inputs.dir, { recursive: true });
    if (process.getuid?.() === 0) require("node:child_process").execFileSync("chown", ["postgres:postgres", inputs.dir]);
    return { id: inputs.dir, outs: inputs };
  },
  async delete(id: string) {
    require("node:fs").rmSync(id, { recursive: true, force: true });
  },
};

/** The WAL archive the stack's restored instances share: kept as long as the stack holds a restore, pruned by destroy. */
export class WalArchive extends pulumi.dynamic.Resource {
  constructor(name: string, args: { dir: string }, opts?: pulumi.CustomResourceOptions) {
    super(archiveProvider, name, args, opts, "stackpin-local", "WalArchive");
  }
}

interface MigrationProps {
  /** The live instance, no password in it. */
  url: string;
  /** The password of the URL's user (a secret in the stack's state). */
  password?: string;
  schema: number;
  migrations: MigrationStep[];
  downs: MigrationStep[];
}

async function migrate(props: MigrationProps) {
  await query(props.url, props.password, "create table if not exists stackpin_migrations (schema int primary key, name text not null, applied_at timestamptz not null default now())");
  const [{ current }] = await query<{ current: number }>(props.url, props.password, "select coalesce(max(schema), 0)::int as current from stackpin_migrations");
  const ran: Array<{ name: string; direction: "up" | "down"; at: string }> = [];
  const { Client } = require(pgModule) as typeof import("pg");
  const client = new Client({ connectionString: connectionString(props.url, props.password), connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    const steps =
      props.schema >= current
        ? props.migrations.filter((m) => m.schema > current && m.schema <= props.schema).map((m) => ({ ...m, direction: "up" as const }))
        : props.downs.filter((m) => m.schema <= current && m.schema > props.schema).map((m) => ({ ...m, direction: "down" as const }));
    if (props.schema < current && steps.length !== current - props.schema) {
      throw new Error(`schema ${current} cannot go down to ${props.schema}: missing down migrations`);
    }
    for (const step of steps) {
      await client.query("begin");
      try {
        await client.query(step.sql);
        if (step.direction === "up") await client.query("insert into stackpin_migrations (schema, name) values ($1, $2)", [step.schema, step.name]);
        else await client.query("delete from stackpin_migrations where schema = $1", [step.schema]);
        await client.query("commit");
      } catch (err) {
        await client.query("rollback");
        throw new Error(`migration ${step.name} (${step.direction}) failed and was rolled back: ${(err as Error).message}`);
      }
      ran.push({ name: step.name, direction: step.direction, at: new Date().toISOString() });
    }
  } finally {
    await client.end();
  }
  return { ...props, applied: props.schema, ran };
}

const migrationProvider: pulumi.dynamic.ResourceProvider = {
  async check(olds: MigrationProps, news: MigrationProps) {
    // Fail the preview, before anything changes, when the database cannot be reached. A URL not known
    // yet (a restore still to be made) is checked when the restore itself is.
    const known = /^postgres(ql)?:\/\//.test(news.url);
    if (known && (olds?.schema !== news.schema || olds?.url !== news.url)) {
      try {
        await query(news.url, news.password, "select 1");
      } catch (err) {
        return { inputs: news, failures: [{ property: "url", reason: (err as Error).message }] };
      }
    }
    return { inputs: news };
  },
  async create(inputs: MigrationProps) {
    return { id: "schema", outs: await migrate(inputs) };
  },
  async diff(_id: string, olds: MigrationProps, news: MigrationProps) {
    return { changes: olds.schema !== news.schema || olds.url !== news.url };
  },
  async update(_id: string, _olds: MigrationProps, news: MigrationProps) {
    return { outs: await migrate(news) };
  },
};

/** The database schema at a version: runs the up (or down) migrations that get there, each in a transaction. */
export class SchemaMigration extends pulumi.dynamic.Resource {
  declare readonly applied: pulumi.Output<number>;
  constructor(name: string, args: { url: pulumi.Input<string>; password?: pulumi.Input<string>; schema: number; migrations: MigrationStep[]; downs: MigrationStep[] }, opts?: pulumi.CustomResourceOptions) {
    super(migrationProvider, name, { ...args, applied: undefined, ran: undefined }, opts, "stackpin-local", "SchemaMigration");
  }
}
