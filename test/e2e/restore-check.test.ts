import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { restoreCheckScript } from "../../programs/kubernetes/restore-check";
import { findPgBin } from "../../scripts/local-postgres";
import { restoredVolumeStandIn } from "./restore-check-kubelet";

/**
 * The Kubernetes target's restore check (programs/kubernetes/restore-check.ts) run as its Job runs it
 * (`sh -c`), on real PostgreSQL data directories on this machine: what it finds in a volume that holds
 * the snapshot's database, an empty one, and one at another schema.
 */
describe("the Kubernetes restore check on a real PostgreSQL data directory", function () {
  let pgBin: string | undefined;
  const dirs: string[] = [];

  before(function () {
    pgBin = findPgBin();
    if (!pgBin) {
      if (process.env.STACKPIN_REQUIRE_E2E === "1") throw new Error("PostgreSQL server binaries are missing (apt-get install postgresql)");
      process.stderr.write("\n  RESTORE CHECK TESTS SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql\n");
      this.skip();
    }
  });

  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  const check = async (schema: number | undefined, expect: string) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-restored-"));
    dirs.push(dir);
    const volume = await restoredVolumeStandIn(dir, schema);
    const before = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("tmp."));
    const r = spawnSync("sh", ["-c", restoreCheckScript], {
      cwd: "/",
      encoding: "utf8",
      env: { PGDATA: volume, RESTORE: "restore-pre-v42-1", SNAPSHOT: "pre-v42", EXPECT_SCHEMA: expect, DATABASE: "postgres", PATH: `${pgBin}:${process.env.PATH}` },
    });
    // It stops the server it started and removes its socket directory.
    assert.equal(fs.existsSync(path.join(volume, "postmaster.pid")), false, "the check left PostgreSQL running");
    assert.deepEqual(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("tmp.") && !before.includes(f)), []);
    return { code: r.status, lastLine: `${r.stdout}`.trimEnd().split("\n").pop() ?? "" };
  };

  it("passes on a volume holding the database at the snapshot's schema", async () => {
    const r = await check(1, "1");
    assert.equal(r.code, 0, r.lastLine);
    assert.equal(r.lastLine, "restore restore-pre-v42-1 from snapshot pre-v42: the database answers at schema 1");
  });

  it("fails on an empty volume (what a restore no CSI driver filled mounts), with stackpin's refusal as its last line", async () => {
    const r = await check(undefined, "1");
    assert.equal(r.code, 1);
    assert.match(r.lastLine, /^\[stackpin:restore-impossible\] restore restore-pre-v42-1 from snapshot pre-v42 failed its check: the restored volume holds no PostgreSQL data directory .*; the database and the app stay on the volume they were on$/);
  });

  it("fails on a database at another schema than the snapshot held", async () => {
    const r = await check(2, "1");
    assert.equal(r.code, 1);
    assert.match(r.lastLine, /failed its check: the restored database holds schema 2, the snapshot held schema 1;/);
  });

  it("with no recorded schema (a snapshot recorded before it was kept), checks only that the database answers", async () => {
    const r = await check(2, "");
    assert.equal(r.code, 0, r.lastLine);
    assert.match(r.lastLine, /answers at schema 2$/);
  });
});
