import { strict as assert } from "node:assert";
import { ExitCode } from "../../lib/errors";
import { json, pulumiOrSkip, TempProject, tempProject } from "./harness";

// STYLE §10: a rollback to the version already live and verified is answered without an update,
// and recorded nowhere; `--force` re-applies it; a live version whose last apply failed is re-applied.
describe("rollback to the version already live (real engine)", function () {
  let project: TempProject;
  const trail = async () => json(await project.cli(["audit", "show", "--stack", "dev", "--json"])).entries.length as number;
  const history = async () => json(await project.cli(["history", "--stack", "dev", "--json"])) as Array<{ revision: number; op: string; to?: string; result: string }>;

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    for (const v of ["v1", "v2"]) {
      const r = await project.cli(["deploy", "--stack", "dev", "--version", v, "--yes"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
  });
  after(async () => project?.teardown());

  it("is skipped: says so, exits 0, and leaves the backend, history and audit trail as they were", async () => {
    const digest = project.stateDigest();
    const [entries, revisions] = [await trail(), (await history()).length];
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes"], { env: { STACKPIN_DEBUG: "timing" } });
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.match(r.stdout, /^skipped rollback: v2 is already live \(revision 2, verified\)/m);
    // Answered from the backend's own history records: no Pulumi CLI call at all, no update.
    assert.deepEqual([...r.stderr.matchAll(/^\[timing\] pulumi (.+): \d+ ms$/gm)].map((m) => m[1]), []);
    assert.match(r.stderr, /^\[timing\] backend history \(2 updates\): \d+ ms$/m);
    assert.equal(project.stateDigest(), digest, "a skipped rollback changed the state or stackpin's records");
    assert.equal(await trail(), entries, "a skipped rollback wrote an audit entry");
    assert.equal((await history()).length, revisions, "a skipped rollback made a history entry");
    const asJson = json(await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes", "--json"]));
    assert.equal(asJson.skipped, "skipped rollback: v2 is already live (revision 2, verified)");
    assert.equal(asJson.outputs.message.value, "hello from v2");
    assert.equal(project.stateDigest(), digest);
  });

  it("--force re-applies it, recorded like any rollback", async () => {
    const entries = await trail();
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes", "--force", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const result = json(r);
    assert.equal(result.skipped, undefined);
    assert.deepEqual([result.from, result.to, result.revision], ["v2", "v2", 3]);
    assert.equal(result.verification.passed, true);
    const newest = (await history())[0];
    assert.deepEqual([newest.revision, newest.op, newest.to, newest.result], [3, "rollback", "v2", "succeeded"]);
    assert.equal(await trail(), entries + 1);
    const status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.deepEqual([status.liveVersion, status.revision, status.verifiedVersion, status.tags["stackpin:version"]], ["v2", 3, "v2", "v2"]);
  });

  it("is not skipped after a failed apply: the stack may be partly at the failed version", async () => {
    const bad = await project.cli(["deploy", "--stack", "dev", "--version", "v3", "--yes"]);
    assert.notEqual(bad.code, ExitCode.ok, "v3 is meant to fail");
    const revisions = (await history()).length;
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const result = json(r);
    assert.equal(result.skipped, undefined);
    assert.equal(result.to, "v2");
    assert.equal((await history()).length, revisions + 1);
  });
});
