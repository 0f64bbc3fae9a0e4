import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { ExitCode } from "../../lib/errors";
import { findPgBin, LocalPostgres, startPostgres } from "../../scripts/local-postgres";
import { json, pulumiOrSkip, TempProject, tempProject } from "./harness";

const deploy = (v: string, ...extra: string[]) => ["deploy", "--stack", "shop", "--version", v, "--yes", "--json", ...extra];
const rollback = (v: string, ...extra: string[]) => ["rollback", "--stack", "shop", "--to", v, "--yes", "--json", ...extra];
const names = (steps: Array<{ name: string; op: string }>) => steps.map((s) => `${s.op} ${s.name}`).sort();

describe("database safety on a real PostgreSQL (base backups, WAL archive, point-in-time restore)", function () {
  let project: TempProject;
  let pg: LocalPostgres;

  before(async function () {
    const pulumi = await pulumiOrSkip(this);
    if (!findPgBin()) {
      if (process.env.STACKPIN_REQUIRE_E2E === "1") throw new Error("PostgreSQL server binaries are missing (apt-get install postgresql)");
      process.stderr.write("\n  DATABASE TESTS SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql\n");
      this.skip();
    }
    project = tempProject(pulumi, { stack: "shop", from: path.join(packageRoot(), "test", "fixtures", "shop") });
    pg = await startPostgres(path.join(project.dir, "pg"));
    const stackFile = path.join(project.dir, "stacks", "shop", "stack.yaml");
    fs.appendFileSync(stackFile, stringify({ config: { database: { url: pg.url, archiveDir: pg.archiveDir, pgBin: pg.pgBin } } }));
  });
  after(async () => {
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
    await new Promise((res) => setTimeout(res, 1100));
    const T = new Date().toISOString();
    await new Promise((res) => setTimeout(res, 1100));
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
