/**
 * A throw-away PostgreSQL cluster with WAL archiving, in a directory of its own: what the database tests
 * and the database benchmark run against. It is a real server from the machine's PostgreSQL packages
 * (Debian: `apt-get install postgresql`), run as the `postgres` user when we are root.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { Client } from "pg";

/** A running cluster. */
export interface LocalPostgres {
  /** `postgres://postgres@127.0.0.1:<port>/app`: never a password in it. */
  url: string;
  /** The postgres user's password, when the cluster was started with one (connections over TCP need it). */
  password?: string;
  port: number;
  dataDir: string;
  archiveDir: string;
  pgBin: string;
  /** Runs SQL on the cluster's `app` database (or another URL). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[], url?: string): Promise<T[]>;
  stop(): void;
  start(): void;
  /** Size of the WAL archive in bytes. */
  archiveBytes(): number;
}

/** The newest PostgreSQL server binaries on the machine, or undefined. */
export function findPgBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!fs.existsSync(root)) return undefined;
  const versions = fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, "bin", "pg_ctl")));
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  return newest ? path.join(root, newest, "bin") : undefined;
}

function asPostgres(pgBin: string, program: string, args: string[]): string {
  const bin = path.join(pgBin, program);
  const [cmd, argv] = process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  const r = spawnSync(cmd, argv, { encoding: "utf8", cwd: "/" });
  if (r.status !== 0) throw new Error(`${program} ${args.join(" ")} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** The parts of a `postgres://user@host:port/db` URL, as the pg driver's options. */
function parseUrl(url: string): { host: string; port: number; user: string; database: string } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 5432), user: decodeURIComponent(u.username) || "postgres", database: u.pathname.slice(1) || "postgres" };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Stops or starts another instance (a restored one) by its data directory, as the postgres user when root. */
export function pgCtl(pgBin: string, dataDir: string, action: "stop" | "start"): void {
  if (action === "stop") asPostgres(pgBin, "pg_ctl", ["-D", dataDir, "-m", "fast", "-w", "stop"]);
  else asPostgres(pgBin, "pg_ctl", ["-D", dataDir, "-l", `${dataDir}.log`, "-w", "-t", "60", "start"]);
}

/**
 * Creates and starts a cluster under `dir` (which must be reachable by the postgres user). With
 * `password`, TCP connections (replication included) authenticate with SCRAM as user postgres with it;
 * without, every connection is trusted.
 */
export async function startPostgres(dir: string, options: { password?: string } = {}): Promise<LocalPostgres> {
  const pgBin = findPgBin();
  if (!pgBin) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)");
  const dataDir = path.join(dir, "data");
  const archiveDir = path.join(dir, "wal-archive");
  fs.mkdirSync(archiveDir, { recursive: true });
  fs.chmodSync(dir, 0o755);
  if (process.getuid?.() === 0) execFileSync("chown", ["postgres:postgres", dir, archiveDir]);
  if (options.password === undefined) {
    asPostgres(pgBin, "initdb", ["-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
  } else {
    // The password reaches initdb in a file only the postgres user reads, removed once the cluster exists.
    const pwfile = path.join(dir, "pwfile");
    fs.writeFileSync(pwfile, `${options.password}\n`, { mode: 0o600 });
    if (process.getuid?.() === 0) execFileSync("chown", ["postgres:postgres", pwfile]);
    try {
      asPostgres(pgBin, "initdb", ["-D", dataDir, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${pwfile}`, "-E", "UTF8", "--no-sync"]);
    } finally {
      fs.rmSync(pwfile, { force: true });
    }
  }
  const port = await freePort();
  fs.appendFileSync(
    path.join(dataDir, "postgresql.conf"),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${dir}'`,
      `wal_level = replica`,
      `archive_mode = on`,
      `archive_command = 'test ! -f ${archiveDir}/%f && cp %p ${archiveDir}/%f'`,
      `max_wal_senders = 5`,
      "",
    ].join("\n"),
  );
  const log = path.join(dir, "postgres.log");
  const start = () => asPostgres(pgBin, "pg_ctl", ["-D", dataDir, "-l", log, "-w", "-t", "60", "start"]);
  const stop = () => {
    if (fs.existsSync(path.join(dataDir, "postmaster.pid"))) asPostgres(pgBin, "pg_ctl", ["-D", dataDir, "-m", "fast", "-w", "stop"]);
  };
  start();
  const { password } = options;
  const admin = new Client({ ...parseUrl(`postgres://postgres@127.0.0.1:${port}/postgres`), password });
  await admin.connect();
  await admin.query("create database app");
  await admin.end();
  const url = `postgres://postgres@127.0.0.1:${port}/app`;
  return {
    url,
    password,
    port,
    dataDir,
    archiveDir,
    pgBin,
    async query<T>(sql: string, params: unknown[] = [], target = url) {
      // A password given apart: the pg driver lets a URL's (empty) one override it.
      const client = new Client({ ...parseUrl(target), password, connectionTimeoutMillis: 5000 });
      await client.connect();
      try {
        return (await client.query(sql, params)).rows as T[];
      } finally {
        await client.end();
      }
    },
    stop,
    start,
    archiveBytes: () =>
      fs.readdirSync(archiveDir).reduce((sum, f) => sum + fs.statSync(path.join(archiveDir, f)).size, 0),
  };
}
