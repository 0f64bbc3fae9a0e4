import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import type { LocalPostgres } from "../../scripts/local-postgres";
import { filesUnder, json, TempProject } from "./harness";
import { pointShopAt, shopWithPostgres } from "./shop-postgres";

/**
 * A deploy whose migration ran and whose release then failed its health gate left the database moved:
 * the next rollback starts from there (the snapshot taken before it is the way back), not from the newest
 * successful update's record.
 */
describe("after a failed deploy that dropped a column, the rollback is the restore to the snapshot taken before it", function () {
  let project: TempProject;
  let pg: LocalPostgres;
  const stack = ["--stack", "shop"];
  const columns = async (url?: string) =>
    (await pg.query<{ column_name: string }>("select column_name from information_schema.columns where table_name = 'items' order by column_name", [], url)).map((c) => c.column_name);
  /** The snapshot's base backup, as the state names it, is still on disk. */
  const snapshotOnDisk = (name: string) => {
    const checkpoint = filesUnder(path.join(project.stateDir, ".pulumi", "stacks")).find((f) => f.endsWith(`${path.sep}shop.json`));
    const resources: Array<{ urn: string; outputs?: { path?: string } }> = JSON.parse(fs.readFileSync(checkpoint!, "utf8")).checkpoint.latest.resources;
    const dir = resources.find((r) => r.urn.endsWith(`::snapshot-${name}`))?.outputs?.path;
    return !!dir && fs.existsSync(path.join(dir, "backup_label"));
  };
  /** The app's /health through the stack's endpoint, and the database port it uses. */
  const served = async (endpoint: string) => (await (await fetch(`${endpoint}/health`)).json()) as { version: string; database: { port: string } };
  let endpoint: string;

  before(async function () {
    ({ project, pg } = await shopWithPostgres(this));
    pointShopAt(project, pg);
    const dir = path.join(project.dir, "stacks", "shop");
    fs.writeFileSync(path.join(dir, "migrations", "002_drop_note.up.sql"), "alter table items drop column note;\n");
    // v2 drops a column (no down: incompatible) and ships a release that never becomes healthy.
    fs.writeFileSync(
      path.join(dir, "v2.yaml"),
      stringify({
        version: "v2",
        description: "notes are dropped; the release needs a cache it cannot reach",
        config: { artifact: "hello-2.0.0", message: "shop v2" },
        verify: { health: { retries: 1, intervalMs: 50 } },
        database: { schema: 2, migration: { name: "002_drop_note", up: "migrations/002_drop_note.up.sql" }, backwardCompatible: false },
      }),
    );
    for (const v of ["v3", "v4"]) fs.rmSync(path.join(dir, `${v}.yaml`));
  });
  after(async () => {
    if (project) assert.equal((await project.cli(["destroy", ...stack, "--yes", "--approve-data-loss"])).code, ExitCode.ok);
    pg?.stop();
    await project?.teardown();
  });

  it("the failed deploy exits 11 and says the schema moved and the snapshot is kept", async () => {
    let r = await project.cli(["deploy", ...stack, "--version", "v1", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    await pg.query("insert into items (note) select 'note ' || g from generate_series(1, 40) g");

    r = await project.cli(["deploy", ...stack, "--version", "v2", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.verificationFailed, r.stderr);
    const message: string = json(r).error.message;
    assert.match(message, /v2 failed its health gate on stack shop: traffic stayed on the previous release \(its database change did not: see below\)/);
    assert.match(message, /the database DID change: its schema moved from 1 to 2 \(snapshot pre-v2 was taken first and is kept\), so v1 now runs on schema 2/);
    assert.deepEqual(await columns(), ["created_at", "id"], "the migration ran: note is gone from the primary");
  });

  it("preview --to v1 plans the point-in-time restore to pre-v2 and keeps the snapshot", async () => {
    const digest = project.stateDigest();
    const r = await project.cli(["preview", ...stack, "--to", "v1", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const plan = json(r);
    assert.equal(plan.database.policy, "point-in-time-restore");
    assert.equal(plan.database.schemaBefore, 2);
    assert.equal(plan.database.restore.snapshot, "pre-v2");
    assert.ok(!plan.resourceChanges.some((c: { op: string; name: string }) => c.name === "snapshot-pre-v2" && ["delete", "replace"].includes(c.op)), "the snapshot is not deleted");
    assert.ok(plan.warnings.some((w: string) => /failed after its migration ran: the database is at schema 2, not 1; snapshot pre-v2 holds it/.test(w)), plan.warnings.join("\n"));
    assert.ok(plan.warnings.some((w: string) => /applying this needs --approve-data-loss/.test(w)));
    assert.equal(project.stateDigest(), digest, "a preview changes nothing");
  });

  it("rollback --to v1 without --approve-data-loss is exit 12 and changes nothing", async () => {
    const digest = project.stateDigest();
    const r = await project.cli(["rollback", ...stack, "--to", "v1", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
    assert.match(json(r).error.message, /rolling back to v1 needs a point-in-time restore to .* \(002_drop_note has no down migration\)/);
    assert.equal(project.stateDigest(), digest);
  });

  it("approved, the rollback restores pre-v2: the column is back on all 40 rows and the app uses it", async () => {
    const r = await project.cli(["rollback", ...stack, "--to", "v1", "--yes", "--approve-data-loss", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const out = json(r).outputs;
    assert.equal(out.database.value.restoredFrom, "pre-v2");
    const url = `postgres://postgres@127.0.0.1:${new URL(out.database.value.url.replace(":***@", "@")).port}/app`;
    assert.deepEqual(await columns(url), ["created_at", "id", "note"]);
    const [{ n }] = await pg.query<{ n: string }>("select count(note) as n from items", [], url);
    assert.equal(n, "40");
    const health = (await (await fetch(`${out.endpoint.value}/health`)).json()) as { version: string; database: { port: string } };
    assert.equal(health.version, "v1");
    assert.equal(health.database.port, new URL(url).port);
  });

  it("snapshot rm re-applies what runs, not the live version's file as edited since, and refuses while frozen", async () => {
    const file = path.join(project.dir, "stacks", "shop", "v1.yaml");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("message: shop v1", "message: edited after it ran"));
    let r = await project.cli(["freeze", ...stack, "--reason", "change window closed"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const digest = project.stateDigest();
    r = await project.cli(["snapshot", "rm", "pre-v2", ...stack, "--approve-data-loss", "--yes"]);
    assert.equal(r.code, ExitCode.frozen, r.stderr);
    assert.equal(project.stateDigest(), digest);
    assert.equal((await project.cli(["unfreeze", ...stack, "--reason", "window open"])).code, ExitCode.ok);

    r = await project.cli(["snapshot", "rm", "pre-v2", ...stack, "--approve-data-loss", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    endpoint = json(r).outputs.endpoint.value;
    const home = (await (await fetch(`${endpoint}/`)).json()) as { message: string };
    assert.equal(home.message, "shop v1", "the edit never ran");
  });
  it("deploy --auto-rollback, approved: v2 migrates then fails verification, and the automatic rollback restores pre-v2", async () => {
    // This time the release is healthy and takes traffic, and a smoke check fails after the apply.
    const v2 = path.join(project.dir, "stacks", "shop", "v2.yaml");
    const failing = fs.readFileSync(v2, "utf8");
    fs.writeFileSync(v2, stringify({ ...parse(failing), config: { artifact: "hello-1.0.0", message: "shop v2" }, verify: { smoke: [{ name: "checkout", run: "exit 3" }] } }));
    let r;
    try {
      r = await project.cli(["deploy", ...stack, "--version", "v2", "--yes", "--auto-rollback", "--approve-data-loss", "--json"]);
    } finally {
      fs.writeFileSync(v2, failing);
    }
    assert.equal(r.code, ExitCode.verificationFailed, r.stderr);
    const error = json(r).error;
    assert.match(error.message, /v2 failed verification on stack shop: .*checkout/);
    assert.match(error.message, /rolled back automatically to v1/);
    const out = error.details.rollback.outputs;
    assert.equal(out.database.value.restoredFrom, "pre-v2");
    const url = `postgres://postgres@127.0.0.1:${new URL(out.database.value.url.replace(":***@", "@")).port}/app`;
    assert.deepEqual(await columns(url), ["created_at", "id", "note"]);
    const [{ n }] = await pg.query<{ n: string }>("select count(note) as n from items", [], url);
    assert.equal(n, "40");
    const health = await served(endpoint);
    assert.equal(health.version, "v1");
    assert.equal(health.database.port, new URL(url).port);
    assert.ok(snapshotOnDisk("pre-v2"), "snapshot pre-v2 is kept");
  });

  it("deploy --auto-rollback without --approve-data-loss: exit 12 after the health gate, the deploy's database story kept, nothing rolled back", async () => {
    const r = await project.cli(["deploy", ...stack, "--version", "v2", "--yes", "--auto-rollback", "--json"]);
    assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
    const message: string = json(r).error.message;
    assert.match(message, /v2 failed its health gate on stack shop: traffic stayed on the previous release/);
    assert.match(message, /the database DID change: its schema moved from 1 to 2 \(snapshot pre-v2-2 was taken first and is kept\)/);
    assert.match(message, /rolling back to v1 needs a point-in-time restore to .* \(002_drop_note has no down migration\)/);
    assert.match(message, /stackpin rollback --stack shop --to v1 --approve-data-loss/);
    assert.doesNotMatch(message, /Nothing was changed/);
    // Still as the failed deploy left it: note dropped on the live database, both snapshots kept, v1 serving.
    const history = json(await project.cli(["history", ...stack, "--json"]));
    assert.deepEqual([history[0].op, history[0].to, history[0].result], ["deploy", "v2", "failed"]);
    const health = await served(endpoint);
    assert.equal(health.version, "v1");
    assert.deepEqual(await columns(`postgres://postgres@127.0.0.1:${health.database.port}/app`), ["created_at", "id"]);
    assert.ok(snapshotOnDisk("pre-v2") && snapshotOnDisk("pre-v2-2"), "both snapshots are kept");
  });
});
