import * as pulumi from "@pulumi/pulumi";
import type { MigrationStep } from "../../lib/database";

/**
 * PostgreSQL as declarative resources for the local target: a snapshot is a base backup
 * (pg_basebackup), a point-in-time restore is a new PostgreSQL instance made from a base backup and the
 * archived WAL replayed up to a recovery target time, and the schema is a migration resource. Failures
 * the user can act on start with a `[stackpin:<code>]` marker that stackpin turns into its typed errors.
 */

/** Where PostgreSQL is, for every database resource. */
export interface PostgresTarget {
  /** The primary's URL, e.g. postgres://postgres@127.0.0.1:5432/app. */
  url: string;
  /** The WAL archive directory (`archive_command` copies there). */
  archiveDir: string;
  /** The directory with pg_ctl and pg_basebackup, e.g. /usr/lib/postgresql/15/bin. */
  pgBin: string;
  /** Where restored instances live; must be reachable by the postgres user. Default: the stack's state dir. */
  restoreDir?: string;
}

// Dynamic provider code runs where bare module names do not resolve: reach the pg driver by path.
const pgModule = require.resolve("pg");

// Runs a PostgreSQL program; as root, it runs as the postgres user, which PostgreSQL requires.
function pgRun(pgBin: string, program: string, args: string[], options: { asPostgres?: boolean } = {}): string {
  const cp = require("node:child_process") as typeof import("node:child_process");
  const p = require("node:path") as typeof import("node:path");
  const bin = p.join(pgBin, program);
  const [cmd, argv] =
    options.asPostgres && process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  // cwd "/": the postgres user may not be allowed into the caller's working directory.
  const r = cp.spawnSync(cmd, argv, { encoding: "utf8", timeout: 300_000, cwd: "/" });
  if (r.status !== 0) throw new Error(`${program} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  return r.stdout;
}

async function query<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const { Client } = require(pgModule) as typeof import("pg");
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`[stackpin:database-unavailable] cannot connect to ${url.replace(/:[^:@/]*@/, ":***@")}: ${(err as Error).message}`);
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

interface SnapshotProps extends PostgresTarget {
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
    await query(inputs.url, "select 1");
    const started = Date.now();
    pgRun(inputs.pgBin, "pg_basebackup", ["-d", inputs.url, "-D", path, "-Fp", "-X", "stream", "-c", "fast", "--no-sync"]);
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
  constructor(name: string, args: PostgresTarget & { name: string; version: string; dir: string }, opts?: pulumi.CustomResourceOptions) {
    super(snapshotProvider, name, { ...args, path: undefined, takenAt: undefined, sizeBytes: undefined, durationMs: undefined }, opts, "stackpin-local", "PostgresSnapshot");
  }
}

interface RestoreProps extends PostgresTarget {
  snapshotPath: string;
  snapshotTakenAt: string;
  time: string;
  dataDir: string;
  database: string;
}

function checkRestore(props: RestoreProps): string | undefined {
  const fs = require("node:fs") as typeof import("node:fs");
  if (!fs.existsSync(props.snapshotPath)) return `[stackpin:restore-impossible] the base backup ${props.snapshotPath} is missing`;
  const wal = fs.existsSync(props.archiveDir) ? fs.readdirSync(props.archiveDir).filter((f) => /^[0-9A-F]{24}$/.test(f)) : [];
  if (wal.length === 0) return `[stackpin:restore-impossible] the WAL archive ${props.archiveDir} is missing or empty`;
  if (new Date(props.time) < new Date(props.snapshotTakenAt)) {
    return `[stackpin:restore-impossible] ${props.time} is outside the recoverable window: the base backup ends at ${props.snapshotTakenAt}`;
  }
  if (new Date(props.time) > new Date()) return `[stackpin:restore-impossible] ${props.time} is in the future`;
  return undefined;
}

const restoreProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: RestoreProps, news: RestoreProps) {
    const problem = checkRestore(news);
    return { inputs: news, failures: problem ? [{ property: "time", reason: problem }] : [] };
  },
  async create(inputs: RestoreProps) {
    const fs = require("node:fs") as typeof import("node:fs");
    const net = require("node:net") as typeof import("node:net");
    const p = require("node:path") as typeof import("node:path");
    const problem = checkRestore(inputs);
    if (problem) throw new Error(problem);
    const started = Date.now();
    // Make the primary archive the WAL segment holding the target time, when it is still up.
    try {
      const [{ wal }] = await query<{ wal: string }>(inputs.url, "select pg_walfile_name(pg_switch_wal()) as wal");
      const deadline = Date.now() + 30_000;
      while (!fs.existsSync(p.join(inputs.archiveDir, wal)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    } catch {
      // the primary is down: restore from what the archive already holds
    }
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once("error", reject);
      srv.listen(0, "127.0.0.1", () => {
        const a = srv.address() as import("node:net").AddressInfo;
        srv.close(() => resolve(a.port));
      });
    });
    fs.rmSync(inputs.dataDir, { recursive: true, force: true });
    fs.mkdirSync(p.dirname(inputs.dataDir), { recursive: true });
    fs.cpSync(inputs.snapshotPath, inputs.dataDir, { recursive: true });
    fs.rmSync(p.join(inputs.dataDir, "standby.signal"), { force: true });
    fs.writeFileSync(p.join(inputs.dataDir, "recovery.signal"), "");
    fs.appendFileSync(
      p.join(inputs.dataDir, "postgresql.auto.conf"),
      [
        `port = ${port}`,
        `listen_addresses = '127.0.0.1'`,
        `unix_socket_directories = '${inputs.dataDir}'`,
        `archive_mode = off`,
        `restore_command = 'cp ${inputs.archiveDir}/%f %p'`,
        `recovery_target_time = '${inputs.time.replace("T", " ").replace(/Z$/, "+00")}'`,
        `recovery_target_action = 'promote'`,
        "",
      ].join("\n"),
    );
    fs.chmodSync(inputs.dataDir, 0o700);
    if (process.getuid?.() === 0) require("node:child_process").execFileSync("chown", ["-R", "postgres:postgres", inputs.dataDir]);
    const log = `${inputs.dataDir}.log`;
    fs.writeFileSync(log, "");
    if (process.getuid?.() === 0) require("node:child_process").execFileSync("chown", ["postgres:postgres", log]);
    try {
      pgRun(inputs.pgBin, "pg_ctl", ["-D", inputs.dataDir, "-l", log, "-w", "-t", "300", "start"], { asPostgres: true });
    } catch (err) {
      const text = fs.readFileSync(log, "utf8");
      fs.rmSync(inputs.dataDir, { recursive: true, force: true });
      fs.rmSync(log, { force: true });
      if (/recovery ended before configured recovery target was reached/.test(text)) {
        throw new Error(`[stackpin:restore-impossible] the WAL archive does not reach ${inputs.time}`);
      }
      throw new Error(`restored PostgreSQL did not start: ${(err as Error).message}\n${text.split("\n").slice(-6).join("\n")}`);
    }
    const url = `postgres://postgres@127.0.0.1:${port}/${inputs.database}`;
    const deadline = Date.now() + 120_000;
    for (;;) {
      const rows = await query<{ r: boolean }>(url, "select pg_is_in_recovery() as r").catch(() => [{ r: true }]);
      if (!rows[0].r) break;
      if (Date.now() > deadline) throw new Error(`restored PostgreSQL at port ${port} is still recovering after 120 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { id: inputs.dataDir, outs: { ...inputs, port, restoredUrl: url, durationMs: Date.now() - started } };
  },
  async diff(_id: string, olds: RestoreProps, news: RestoreProps) {
    const replaces = ["snapshotPath", "time", "dataDir", "archiveDir"].filter(
      (k) => (olds as unknown as Record<string, unknown>)[k] !== (news as unknown as Record<string, unknown>)[k],
    );
    return { changes: replaces.length > 0, replaces };
  },
  async delete(id: string, props: RestoreProps) {
    const fs = require("node:fs") as typeof import("node:fs");
    if (fs.existsSync(`${id}/postmaster.pid`)) {
      try {
        pgRun(props.pgBin, "pg_ctl", ["-D", id, "-m", "fast", "-w", "stop"], { asPostgres: true });
      } catch {
        // not running
      }
    }
    fs.rmSync(id, { recursive: true, force: true });
    fs.rmSync(`${id}.log`, { force: true });
  },
};

/** A PostgreSQL instance restored from a base backup plus archived WAL, up to `time`. */
export class PointInTimeRestore extends pulumi.dynamic.Resource {
  declare readonly restoredUrl: pulumi.Output<string>;
  declare readonly port: pulumi.Output<number>;
  declare readonly durationMs: pulumi.Output<number>;
  constructor(
    name: string,
    args: PostgresTarget & { snapshotPath: pulumi.Input<string>; snapshotTakenAt: pulumi.Input<string>; time: string; dataDir: string; database: string },
    opts?: pulumi.CustomResourceOptions,
  ) {
    super(restoreProvider, name, { ...args, port: undefined, restoredUrl: undefined, durationMs: undefined }, opts, "stackpin-local", "PointInTimeRestore");
  }
}

interface MigrationProps {
  url: string;
  schema: number;
  migrations: MigrationStep[];
  downs: MigrationStep[];
}

async function migrate(props: MigrationProps) {
  await query(props.url, "create table if not exists stackpin_migrations (schema int primary key, name text not null, applied_at timestamptz not null default now())");
  const [{ current }] = await query<{ current: number }>(props.url, "select coalesce(max(schema), 0)::int as current from stackpin_migrations");
  const ran: Array<{ name: string; direction: "up" | "down"; at: string }> = [];
  const { Client } = require(pgModule) as typeof import("pg");
  const client = new Client({ connectionString: props.url, connectionTimeoutMillis: 5000 });
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
        await query(news.url, "select 1");
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
  constructor(name: string, args: { url: pulumi.Input<string>; schema: number; migrations: MigrationStep[]; downs: MigrationStep[] }, opts?: pulumi.CustomResourceOptions) {
    super(migrationProvider, name, { ...args, applied: undefined, ran: undefined }, opts, "stackpin-local", "SchemaMigration");
  }
}
