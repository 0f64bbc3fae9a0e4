import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import { LocalPostgres, pgCtl } from "../../scripts/local-postgres";
import { json, portFree, TempProject } from "./harness";
import { pointShopAt, shopWithPostgres } from "./shop-postgres";

const deploy = (v: string, ...extra: string[]) => ["deploy", "--stack", "shop", "--version", v, "--yes", "--json", ...extra];
const rollback = (v: string, ...extra: string[]) => ["rollback", "--stack", "shop", "--to", v, "--yes", "--json", ...extra];
/**
 * A recovery target between two writes: a millisecond past the database's clock after the first write
 * committed, returned once that clock has passed it (so the next write commits after it). No sleeping.
 */
async function markTime(pg: LocalPostgres, url = pg.url): Promise<string> {
  const [{ now }] = await pg.query<{ now: Date }>("select clock_timestamp() as now", [], url);
  const T = new Date(now.getTime() + 2).toISOString();
  for (;;) {
    const [{ past }] = await pg.query<{ past: boolean }>("select clock_timestamp() > $1::timestamptz as past", [T], url);
    if (past) return T;
  }
}

const names = (steps: Array<{ name: string; op: string }>) => steps.map((s) => `${s.op} ${s.name}`).sort();

describe("database safety on a real PostgreSQL (base backups, WAL archive, point-in-time restore)", function () {
  let project: TempProject;
  let pg: LocalPostgres;

  before(async function () {
    ({ project, pg } = await shopWithPostgres(this));
    pointShopAt(project, pg);
  });
  after(async () => {
    if (project) assert.equal((await project.cli(["destroy", "--stack", "shop", "--yes", "--approve-data-loss"])).code, ExitCode.ok);
    pg?.stop();
    await project?.teardown();
  });

  async function columns(url = pg.url): Promise<string[]> {
    const rows = await pg.query<{ column_name: string }>(
      "select column_name from information_schema.columns where table_name = 'items' order by column_name",
      [],
      url,
    );
    return rows.map((r) => r.column_name);
  }
  const schemaOf = async (url = pg.url) =>
    (await pg.query<{ s: number }>("select coalesce(max(schema), 0)::int as s from stackpin_migrations", [], url))[0].s;

  it("migrates forward: v1 creates the table, v2 adds a column without a snapshot (backward compatible)", async () => {
    let r = await project.cli(deploy("v1"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    await pg.query("insert into items (note) values ('first'), ('second')");
    r = await project.cli(deploy("v2"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.deepEqual(await columns(), ["created_at", "id", "note", "tag"]);
    assert.equal(await schemaOf(), 2);
    const out = json(r).outputs;
    assert.deepEqual(out.databaseSnapshots.value, {});
    assert.equal(out.database.value.schema, 2);
  });

  it("an expand/contract rollback leaves the database alone: no database operation at all", async () => {
    const before = await pg.query("select * from stackpin_migrations order by schema");
    const preview = json(await project.cli(["preview", "--stack", "shop", "--to", "v1", "--json"]));
    assert.equal(preview.database.policy, "expand-contract");
    assert.ok(preview.notes.includes("v1 works with schema 2 (expand/contract): the database is left alone"));
    const r = await project.cli(rollback("v1"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const touched = json(r).resourceChanges.filter((s: any) => /Schema|Postgres|Restore/.test(s.type));
    assert.deepEqual(touched, [], "the rollback touched a database resource");
    assert.deepEqual(await pg.query("select * from stackpin_migrations order by schema"), before);
    assert.deepEqual(await columns(), ["created_at", "id", "note", "tag"]);
  });

  it("PostgreSQL unreachable: exit 13 and nothing changed", async () => {
    pg.stop();
    try {
      const digest = project.stateDigest();
      const r = await project.cli(deploy("v3"));
      assert.equal(r.code, ExitCode.databaseUnavailable, r.stderr);
      assert.match(json(r).error.message, /cannot connect to postgres:\/\/postgres@127\.0\.0\.1:\d+\/app/);
      assert.equal(project.stateDigest(), digest);
    } finally {
      pg.start();
    }
  });

  it("an incompatible version gets a snapshot named after it before it migrates, shown in preview and status", async () => {
    const preview = json(await project.cli(["preview", "--stack", "shop", "--version", "v3", "--json"]));
    assert.equal(preview.database.snapshot, "pre-v3");
    assert.ok(names(preview.resourceChanges).includes("create snapshot-pre-v3"));
    const r = await project.cli(deploy("v3"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.deepEqual(await columns(), ["created_at", "id", "tag"]);
    const status = json(await project.cli(["status", "--stack", "shop", "--json"]));
    assert.equal(status.outputs.databaseSnapshots.value["pre-v3"].version, "v3");
    assert.ok(fs.existsSync(path.join(project.dir, ".stackpin", "local", "shop", "snapshots", "pre-v3", "PG_VERSION")));
  });

  it("a rollback across a migration with a down takes a fresh snapshot, runs the down, and warns of data loss", async () => {
    const preview = json(await project.cli(["preview", "--stack", "shop", "--to", "v2", "--json"]));
    assert.equal(preview.database.policy, "down-migration");
    assert.ok(preview.warnings.some((w: string) => /003_drop_note drop what schema 3 added: data held only there is lost/.test(w)));
    const r = await project.cli(rollback("v2"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.equal(await schemaOf(), 2);
    assert.deepEqual(await columns(), ["created_at", "id", "note", "tag"], "the down migration re-added note");
    assert.ok(json(r).outputs.databaseSnapshots.value["pre-down-v2-from-3"], "a fresh snapshot was taken first");
  });

  it("restores to a time T: rows written before T are there, rows written after T are not, and the app uses it", async () => {
    let r = await project.cli(deploy("v4"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    await pg.query("insert into items (tag) select 'before-' || g from generate_series(1, 50) g");
    const T = await markTime(pg);
    await pg.query("insert into items (tag) select 'after-' || g from generate_series(1, 30) g");

    const digest = project.stateDigest();
    r = await project.cli(["restore", "--stack", "shop", "--to-time", T, "--yes", "--json"]);
    assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
    assert.match(json(r).error.message, /needs explicit approval: re-run with --approve-data-loss/);
    assert.equal(project.stateDigest(), digest);

    r = await project.cli(["restore", "--stack", "shop", "--to-time", T, "--approve-data-loss", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const result = json(r);
    assert.equal(result.database.dataLossWindow.from, T);
    const restoredUrl = `postgres://postgres@127.0.0.1:${new URL(result.outputs.database.value.url.replace(":***@", "@")).port}/app`;
    assert.notEqual(restoredUrl, pg.url);
    const counts = await pg.query<{ before: string; after: string }>(
      "select count(*) filter (where tag like 'before-%') as before, count(*) filter (where tag like 'after-%') as after from items",
      [],
      restoredUrl,
    );
    assert.deepEqual(counts, [{ before: "50", after: "0" }]);
    const health = (await (await fetch(`${result.outputs.endpoint.value}/health`)).json()) as { database: { port: string } };
    assert.equal(health.database.port, new URL(restoredUrl).port, "the app is pointed at the restored database");
  });

  it("refuses a restore outside the recoverable window, and one whose WAL archive is missing: exit 13, nothing changed", async () => {
    let digest = project.stateDigest();
    let r = await project.cli(["restore", "--stack", "shop", "--to-time", "2001-01-01T00:00:00Z", "--approve-data-loss", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.databaseUnavailable, r.stderr);
    assert.match(json(r).error.message, /outside the recoverable window/);
    assert.equal(project.stateDigest(), digest);

    const moved = `${pg.archiveDir}.moved`;
    fs.renameSync(pg.archiveDir, moved);
    try {
      digest = project.stateDigest();
      r = await project.cli(["restore", "--stack", "shop", "--snapshot", "pre-v4", "--approve-data-loss", "--yes", "--json"]);
      assert.equal(r.code, ExitCode.databaseUnavailable, r.stderr);
      assert.match(json(r).error.message, /WAL archive .* is missing or empty/);
      assert.equal(project.stateDigest(), digest);
    } finally {
      fs.renameSync(moved, pg.archiveDir);
    }
  });

  it("a rollback past a migration without a down needs approval, then restores to just before it", async () => {
    const digest = project.stateDigest();
    let r = await project.cli(rollback("v3"));
    assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
    assert.match(json(r).error.message, /needs a point-in-time restore to .* \(004_tag_required has no down migration\)/);
    assert.equal(project.stateDigest(), digest);

    const preview = json(await project.cli(["preview", "--stack", "shop", "--to", "v3", "--json"]));
    assert.equal(preview.database.policy, "point-in-time-restore");
    assert.ok(preview.database.dataLossWindow.from, "the preview states the data-loss window");

    r = await project.cli(rollback("v3", "--approve-data-loss"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const out = json(r).outputs;
    assert.equal(out.database.value.restoredFrom, "pre-v4");
    const url = `postgres://postgres@127.0.0.1:${new URL(out.database.value.url.replace(":***@", "@")).port}/app`;
    assert.equal(await schemaOf(url), 3);
    const nullable = await pg.query<{ is_nullable: string }>(
      "select is_nullable from information_schema.columns where table_name = 'items' and column_name = 'tag'",
      [],
      url,
    );
    assert.deepEqual(nullable, [{ is_nullable: "YES" }], "the restored database is from before 004_tag_required");
  });
});

describe("restores chain, and no backup or restored database leaves without approval (a schema of our own)", function () {
  let project: TempProject;
  let pg: LocalPostgres;
  const stackDir = () => path.join(project.dir, "stacks", "shop");
  const restored: Record<string, string> = {};

  before(async function () {
    ({ project, pg } = await shopWithPostgres(this));
    for (const f of ["v1", "v2", "v3", "v4"]) fs.rmSync(path.join(stackDir(), `${f}.yaml`));
    fs.rmSync(path.join(stackDir(), "migrations"), { recursive: true });
    fs.mkdirSync(path.join(stackDir(), "migrations"));
    fs.writeFileSync(path.join(stackDir(), "migrations", "001_ledger.up.sql"), "create table ledger (id serial primary key, batch text not null, memo text);");
    fs.writeFileSync(path.join(stackDir(), "migrations", "002_drop_memo.up.sql"), "alter table ledger drop column memo;");
    project.writeVersion("v1", stringify({ version: "v1", config: { artifact: "hello-1.0.0", message: "ledger v1" }, database: { schema: 1, migration: { name: "001_ledger", up: "migrations/001_ledger.up.sql" }, backwardCompatible: true } }));
    project.writeVersion("v2", stringify({ version: "v2", config: { artifact: "hello-1.1.0", message: "ledger v2" }, database: { schema: 2, migration: { name: "002_drop_memo", up: "migrations/002_drop_memo.up.sql" }, backwardCompatible: false } }));
    // From before the database was managed by this file: no `database:` section at all.
    project.writeVersion("v3", stringify({ version: "v3", config: { artifact: "hello-1.1.0", message: "ledger v3" } }));
    pointShopAt(project, pg);
  });
  after(async () => {
    if (project) await project.cli(["destroy", "--stack", "shop", "--yes", "--approve-data-loss"]);
    pg?.stop();
    await project?.teardown();
  });

  const urlOf = (port: number | string) => `postgres://postgres@127.0.0.1:${port}/app`;
  const count = async (batch: string, url: string) =>
    Number((await pg.query<{ n: string }>("select count(*) as n from ledger where batch = $1", [batch], url))[0].n);
  const insert = (batch: string, n: number, url: string) =>
    pg.query(`insert into ledger (batch) select $1 from generate_series(1, ${n})`, [batch], url);
  const columnsOf = async (url: string) =>
    (await pg.query<{ c: string }>("select column_name as c from information_schema.columns where table_name = 'ledger' order by 1", [], url)).map((r) => r.c);
  const answers = (url: string) => pg.query("select 1", [], url).then(() => true, () => false);
  const healthPort = async (endpoint: string) => ((await (await fetch(`${endpoint}/health`)).json()) as { database: { port: string } }).database.port;
  /** The live instance's name and URL from a command's outputs, and the restore's figures printed. */
  function adopt(r: { code: number; stdout: string; stderr: string }, n: number, startedAt: number) {
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const out = json(r).outputs;
    const live: string = out.database.value.live;
    const instance = out.databaseInstances.value[live];
    restored[live] = urlOf(instance.port);
    console.log(
      `      [figures] restore ${n} took ${(out.restoreDurationMs.value / 1000).toFixed(1)} s (whole command ${((Date.now() - startedAt) / 1000).toFixed(1)} s): ` +
        `${live} on port ${instance.port}, timeline ${instance.timeline}, from ${instance.source} via ${instance.snapshot}, WAL archived to ${instance.archiveDir}`,
    );
    return { out, live, url: restored[live] };
  }

  let first: { live: string; url: string };
  let second: { live: string; url: string };

  it("deploy v1, 40 rows, deploy v2 (incompatible: pre-v2 from the primary), 25 rows, rollback to v1: 40 rows, not the 25, the column back", async () => {
    assert.equal((await project.cli(deploy("v1"))).code, ExitCode.ok);
    await insert("forty", 40, pg.url);
    let r = await project.cli(deploy("v2"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.deepEqual(json(r).outputs.databaseSnapshots.value["pre-v2"].source, "primary");
    await insert("twenty-five", 25, pg.url);

    const digest = project.stateDigest();
    r = await project.cli(rollback("v1"));
    assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
    assert.equal(project.stateDigest(), digest);

    const t = Date.now();
    first = adopt(await project.cli(rollback("v1", "--approve-data-loss")), 1, t);
    assert.equal(await count("forty", first.url), 40);
    assert.equal(await count("twenty-five", first.url), 0);
    assert.deepEqual(await columnsOf(first.url), ["batch", "id", "memo"]);
    assert.ok(await answers(pg.url), "the primary still serves");
  });

  it("a deploy of a version without a database section keeps every backup and the restored database serving", async () => {
    const r = await project.cli(deploy("v3"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const out = json(r);
    assert.deepEqual(Object.keys(out.outputs.databaseSnapshots.value), ["pre-v2"]);
    assert.equal(out.outputs.database.value.live, first.live);
    const touched = out.resourceChanges.filter((s: any) => /Postgres|Restore|WalArchive|Schema/.test(s.type));
    assert.deepEqual(touched, [], "a version without a database section touched a database resource");
    assert.ok(fs.existsSync(path.join(project.dir, ".stackpin", "local", "shop", "snapshots", "pre-v2", "PG_VERSION")));
    assert.equal(await count("forty", first.url), 40, "the restored database still answers with its rows");
    assert.equal(await healthPort(out.outputs.endpoint.value), new URL(first.url).port, "the app still uses it");
  });

  it("a second restore, to a time T on the restored primary: rows A present, rows B absent, the app moved, the first restore still serving", async () => {
    await insert("A", 7, first.url);
    const T = await markTime(pg, first.url);
    await insert("B", 5, first.url);
    const digest = project.stateDigest();
    let r = await project.cli(["restore", "--stack", "shop", "--to-time", T, "--yes", "--json"]);
    assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
    assert.equal(project.stateDigest(), digest);

    const t = Date.now();
    r = await project.cli(["restore", "--stack", "shop", "--to-time", T, "--approve-data-loss", "--yes", "--json"]);
    second = adopt(r, 2, t);
    const instances = json(r).outputs.databaseInstances.value;
    assert.notEqual(second.live, first.live);
    assert.equal(instances[second.live].source, first.live, "T was on the first restored database");
    assert.notEqual(instances[second.live].timeline, instances[first.live].timeline, "each restore runs on a timeline of its own");
    assert.equal(await count("A", second.url), 7);
    assert.equal(await count("B", second.url), 0);
    assert.equal(await count("forty", second.url), 40);
    assert.equal(await healthPort(json(r).outputs.endpoint.value), new URL(second.url).port, "the app is pointed at the new one");
    assert.equal(await count("B", first.url), 5, "the first restored database is kept, with every write");
  });

  it("a rollback past an incompatible version after a restore restores from a snapshot of the restored primary", async () => {
    let r = await project.cli(deploy("v2"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const snaps = json(r).outputs.databaseSnapshots.value;
    assert.equal(snaps["pre-v2-2"].source, second.live, "the snapshot before v2 was taken from the live, restored database");
    assert.equal(snaps["pre-v2"].source, "primary");
    await insert("C", 3, second.url);
    const t = Date.now();
    const third = adopt(await project.cli(rollback("v1", "--approve-data-loss")), 3, t);
    assert.equal(json(await project.cli(["status", "--stack", "shop", "--json"])).outputs.database.value.restoredFrom, "pre-v2-2");
    assert.equal(await count("A", third.url), 7, "it holds what the restored primary had");
    assert.equal(await count("C", third.url), 0);
    assert.deepEqual(await columnsOf(third.url), ["batch", "id", "memo"]);
    for (const url of Object.values(restored)) assert.ok(await answers(url), `${url} still serves`);
  });

  it("snapshot rm needs approval, never takes the live database, and removes an old restore when approved", async () => {
    let digest = project.stateDigest();
    let r = await project.cli(["snapshot", "rm", first.live, "--stack", "shop", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
    assert.equal(project.stateDigest(), digest);
    assert.ok(await answers(first.url));

    const live = json(await project.cli(["status", "--stack", "shop", "--json"])).outputs.database.value.live;
    r = await project.cli(["snapshot", "rm", live, "--stack", "shop", "--yes", "--approve-data-loss", "--json"]);
    assert.equal(r.code, ExitCode.usage, r.stderr);
    assert.match(json(r).error.message, /it is the live database the app uses/);
    assert.equal(project.stateDigest(), digest);

    r = await project.cli(["snapshot", "rm", first.live, "--stack", "shop", "--yes", "--approve-data-loss", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.deepEqual(json(r).resourceChanges.map((s: any) => `${s.op} ${s.name}`), [`delete ${first.live}`]);
    assert.equal(await answers(first.url), false);
    assert.ok(await answers(second.url));

    digest = project.stateDigest();
    const during = new Date(Date.parse(json(r).outputs.databaseInstances.value[second.live].liveFrom) - 1).toISOString();
    r = await project.cli(["restore", "--stack", "shop", "--to-time", during, "--approve-data-loss", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.databaseUnavailable, r.stderr);
    assert.match(json(r).error.message, /was live, and it was removed/);
    assert.equal(project.stateDigest(), digest);
  });

  it("a restore that cannot complete (the restored timelines' WAL is gone) is refused in preflight: exit 13, nothing changed", async () => {
    const live = json(await project.cli(["status", "--stack", "shop", "--json"])).outputs.database.value.live;
    await insert("D", 2, restored[live]);
    const T = await markTime(pg, restored[live]);
    const archive = path.join(project.dir, ".stackpin", "local", "shop", "restores", "wal-archive");
    fs.renameSync(archive, `${archive}.moved`);
    try {
      const digest = project.stateDigest();
      const r = await project.cli(["restore", "--stack", "shop", "--to-time", T, "--approve-data-loss", "--yes", "--json"]);
      assert.equal(r.code, ExitCode.databaseUnavailable, r.stderr);
      assert.match(json(r).error.message, /WAL archive/);
      assert.equal(project.stateDigest(), digest);
      assert.ok(await answers(restored[live]), "the live database still serves");
    } finally {
      fs.renameSync(`${archive}.moved`, archive);
    }
  });

  it("with the live database stopped, a restore past the WAL it archived is refused in preflight: exit 13, nothing changed", async () => {
    const live = json(await project.cli(["status", "--stack", "shop", "--json"])).outputs.database.value.live;
    await insert("E", 2, restored[live]);
    const T = await markTime(pg, restored[live]);
    const dataDir = path.join(project.dir, ".stackpin", "local", "shop", "restores", live);
    pgCtl(pg.pgBin, dataDir, "stop");
    try {
      const digest = project.stateDigest();
      const r = await project.cli(["restore", "--stack", "shop", "--to-time", T, "--approve-data-loss", "--yes", "--json"]);
      assert.equal(r.code, ExitCode.databaseUnavailable, r.stderr);
      assert.match(json(r).error.message, new RegExp(`${live} is not running and the WAL archived from it reaches only`));
      assert.equal(project.stateDigest(), digest);
    } finally {
      pgCtl(pg.pgBin, dataDir, "start");
    }
    assert.equal(await count("E", restored[live]), 2);
  });

  it("destroy refuses while the stack holds backups (exit 12, all still serving); approved, it stops every instance", async () => {
    const digest = project.stateDigest();
    let r = await project.cli(["destroy", "--stack", "shop", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
    assert.match(json(r).error.message, /destroying deletes restored database .*snapshot pre-v2/);
    assert.equal(project.stateDigest(), digest);
    const kept = Object.entries(restored).filter(([name]) => name !== first.live);
    for (const [, url] of kept) assert.ok(await answers(url));
    r = await project.cli(["destroy", "--stack", "shop", "--yes", "--approve-data-loss", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    for (const [, url] of kept) assert.equal(await portFree(Number(new URL(url).port)), true, `${url} was stopped`);
    assert.ok(await answers(pg.url), "the primary is not the stack's to stop");
  });
});
