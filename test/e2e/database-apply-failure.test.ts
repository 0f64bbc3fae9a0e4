import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { ExitCode } from "../../lib/errors";
import type { LocalPostgres } from "../../scripts/local-postgres";
import { json, TempProject } from "./harness";
import { pointShopAt, shopWithPostgres } from "./shop-postgres";

/**
 * A database failure found inside the update, after the preview's checks passed, is not a refusal: the
 * update ran, failed and is in history, so it exits 8, says which revision, and is audited as a failure.
 */
describe("a database change that fails during the update says what ran (exit 8), not \"nothing was changed\"", function () {
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

  /** Ends the current WAL segment and resolves with its name once the archive holds it. */
  async function switchAndArchive(): Promise<string> {
    await pg.query("insert into items (tag) select 'row ' || g from generate_series(1, 20) g");
    const [{ wal }] = await pg.query<{ wal: string }>("select pg_walfile_name(pg_switch_wal()) as wal");
    for (;;) {
      const [{ last }] = await pg.query<{ last: string | null }>("select last_archived_wal as last from pg_stat_archiver");
      if (last && last >= wal && fs.existsSync(path.join(pg.archiveDir, wal))) return wal;
    }
  }

  it("a restore whose archived WAL has a gap passes the preview, fails at create: exit 8, revision named, history and audit say failed", async () => {
    for (const v of ["v1", "v3"]) {
      const r = await project.cli(["deploy", "--stack", "shop", "--version", v, "--yes"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
    // Three segments after the snapshot pre-v3; the middle one goes missing. The preflight follows the
    // archive only to where it is complete and the source still runs, so it cannot see the gap.
    await switchAndArchive();
    const gap = await switchAndArchive();
    await switchAndArchive();
    const [{ now }] = await pg.query<{ now: Date }>("select clock_timestamp() as now");
    const T = now.toISOString();
    await pg.query("insert into items (tag) values ('after T')");
    fs.rmSync(path.join(pg.archiveDir, gap));

    const before = json(await project.cli(["history", "--stack", "shop", "--json"]));
    const r = await project.cli(["restore", "--stack", "shop", "--to-time", T, "--approve-data-loss", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.applyFailed, r.stderr);
    const error = json(r).error;
    assert.equal(error.code, "database-apply-failed");
    assert.doesNotMatch(error.message, /nothing was changed/i);
    const history = json(await project.cli(["history", "--stack", "shop", "--json"]));
    assert.equal(history.length, before.length + 1, "the failed update is in history");
    assert.deepEqual([history[0].op, history[0].result], ["restore", "failed"]);
    assert.match(
      error.message,
      new RegExp(`failed in its database change during the update \\(revision ${history[0].revision}, recorded in history as failed\\); the stack may be partially updated\\. Run \`stackpin status --stack shop\``),
    );
    assert.match(error.message, /the WAL archived from primary does not reach/);
    const trail = json(await project.cli(["audit", "show", "--stack", "shop", "--json"]));
    const last = trail.entries[trail.entries.length - 1];
    assert.deepEqual([last.op, last.result], ["restore", "failed"]);
    assert.match(last.detail, /database change/);
    assert.equal((await project.cli(["audit", "verify", "--stack", "shop"])).code, ExitCode.ok);
    assert.equal(json(await project.cli(["status", "--stack", "shop", "--json"])).liveVersion, "v3");
  });
});
