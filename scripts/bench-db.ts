/**
 * `npm run bench:db`: figures for the database features on a real PostgreSQL, printed, not asserted.
 * Loads about 100 MB into a throw-away cluster with WAL archiving, then through stackpin: deploys an
 * incompatible version (which takes a base-backup snapshot first) and restores to a point in time.
 * Prints the database size, the snapshot and restore times, and the WAL archive size they needed.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";
import { ensurePulumi, packageRoot } from "../lib/engine/pulumi-cli";
import { Environment } from "../lib";
import { startPostgres } from "./local-postgres";

const targetMb = Number(process.env.BENCH_DB_MB ?? 100);

async function run(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-bench-db-"));
  fs.chmodSync(dir, 0o755);
  const pg = await startPostgres(path.join(dir, "pg"));
  let env: Environment | undefined;
  try {
    const stackDir = path.join(dir, "stacks", "shop");
    fs.cpSync(path.join(packageRoot(), "test", "fixtures", "shop"), stackDir, { recursive: true });
    fs.appendFileSync(path.join(stackDir, "stack.yaml"), stringify({ config: { database: { url: pg.url, archiveDir: pg.archiveDir, pgBin: pg.pgBin } } }));
    env = await Environment.open({
      stack: "shop",
      projectDir: dir,
      passphrase: { value: "bench" },
      pulumi: await ensurePulumi({ searchPath: process.env.PATH }),
      actor: "bench",
    });
    await env.deploy({ version: "v1" });
    await env.deploy({ version: "v2" });
    const rows = Math.round((targetMb * 1024 * 1024) / 150);
    let t = Date.now();
    await pg.query(`insert into items (note, tag) select repeat(md5(g::text), 3), 'bulk' from generate_series(1, ${rows}) g`);
    await pg.query("checkpoint");
    const [{ size }] = await pg.query<{ size: string }>("select pg_database_size('app')::bigint as size");
    console.log(`loaded ${rows} rows, database size ${(Number(size) / 1048576).toFixed(1)} MB in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    const archiveBefore = pg.archiveBytes();

    t = Date.now();
    const v3 = await env.deploy({ version: "v3", message: "incompatible: snapshot first" });
    const snap = (v3.outputs.databaseSnapshots.value as Record<string, { durationMs: number; sizeBytes: number }>)["pre-v3"];
    console.log(`snapshot pre-v3 (pg_basebackup): ${(snap.durationMs / 1000).toFixed(1)} s, ${(snap.sizeBytes / 1048576).toFixed(1)} MB; whole deploy ${((Date.now() - t) / 1000).toFixed(1)} s`);

    await pg.query("insert into items (tag) select 'late' from generate_series(1, 1000)");
    const T = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 1000));
    await pg.query("insert into items (tag) select 'after' from generate_series(1, 1000)");
    t = Date.now();
    const restored = await env.restore({ time: T, approveDataLoss: true, reason: "bench" });
    console.log(
      `point-in-time restore to ${T}: ${((restored.outputs.restoreDurationMs.value as number) / 1000).toFixed(1)} s (WAL switch, copy of the base backup, WAL replay, promote); whole apply ${((Date.now() - t) / 1000).toFixed(1)} s`,
    );
    console.log(`WAL archive: ${(pg.archiveBytes() / 1048576).toFixed(1)} MB in all, ${((pg.archiveBytes() - archiveBefore) / 1048576).toFixed(1)} MB written since the load`);
  } finally {
    await env?.destroy({ yes: true, approveDataLoss: true }).catch((e) => console.error(`destroy: ${(e as Error).message}`));
    pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

run().catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
});
