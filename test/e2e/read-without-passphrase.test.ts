import { strict as assert } from "node:assert";
import { openEnvironment } from "../../lib";
import type { PulumiCli } from "../../lib/engine/pulumi-cli";
import { ExitCode } from "../../lib/errors";
import { demoPassphrase, json, pulumiOrSkip, TempProject, tempProject } from "./harness";

// Reading a stack's history decrypts nothing (Pulumi's `stack history --json` leaves secret config
// encrypted), so the commands that only read work on a machine that has no passphrase: an on-call
// engineer can ask what is live without being able to deploy.
describe("status and history of a passphrase stack need no passphrase (real engine)", function () {
  let project: TempProject;
  let pulumi: PulumiCli;
  const noPassphrase = { PULUMI_CONFIG_PASSPHRASE: undefined };

  before(async function () {
    pulumi = await pulumiOrSkip(this);
    project = tempProject(pulumi);
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
  });
  after(async () => project?.teardown());

  it("status --json without PULUMI_CONFIG_PASSPHRASE says what it says with it", async () => {
    const without = await project.cli(["status", "--stack", "dev", "--json"], { env: noPassphrase });
    assert.equal(without.code, ExitCode.ok, without.stderr);
    const withIt = await project.cli(["status", "--stack", "dev", "--json"]);
    assert.equal(json(without).liveVersion, "v1");
    assert.deepEqual(json(without), json(withIt));
    assert.equal(json(without).outputs.tokenSha256.value, "[secret]");
  });

  it("history --json without PULUMI_CONFIG_PASSPHRASE lists the deploy", async () => {
    const r = await project.cli(["history", "--stack", "dev", "--json"], { env: noPassphrase });
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const entries = json(r) as Array<{ op: string; to?: string; result: string }>;
    assert.deepEqual(entries.map((e) => [e.op, e.to, e.result]), [["deploy", "v1", "succeeded"]]);
  });

  it("what runs the engine still refuses without it (exit 6), changing nothing", async () => {
    const before = project.stateDigest();
    const r = await project.cli(["preview", "--stack", "dev", "--version", "v2"], { env: noPassphrase });
    assert.equal(r.code, ExitCode.missingPassphrase, r.stderr);
    assert.match(r.stderr, /encrypts its secrets with a passphrase, and none was given/);
    assert.equal(project.stateDigest(), before);
  });

  it("after an update outside stackpin, history still needs none, and status asks for it (Pulumi's stack output does, even masked)", async () => {
    // An operator's own refresh: the newest update is no stackpin apply, so its outputs are not in stackpin's records.
    const ctx = await openEnvironment({ stack: "dev", projectDir: project.dir, passphrase: { value: demoPassphrase }, pulumi, pulumiHome: project.env.PULUMI_HOME, actor: "operator" });
    const engine = await ctx.openEngine({ create: false });
    try {
      await engine.refreshClearingPendingCreates("an operator's own refresh");
    } finally {
      engine.close();
    }
    const h = await project.cli(["history", "--stack", "dev", "--json"], { env: noPassphrase });
    assert.equal(h.code, ExitCode.ok, h.stderr);
    assert.equal(json(h)[0].op, "refresh");
    const s = await project.cli(["status", "--stack", "dev", "--json"], { env: noPassphrase });
    assert.equal(s.code, ExitCode.missingPassphrase, s.stderr);
    assert.match(json(s).error.message, /set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE/);
    assert.equal((await project.cli(["status", "--stack", "dev", "--json"])).code, ExitCode.ok);
  });
});
