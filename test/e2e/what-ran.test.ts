import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import { openEnvironment } from "../../lib";
import { readBackendHistory } from "../../lib/engine/backend-history";
import type { PulumiCli } from "../../lib/engine/pulumi-cli";
import { demoPassphrase, json, operatorPulumi, pulumiOrSkip, TempProject, tempProject } from "./harness";
import { makeSigners, Signers } from "./ssh-signers";

/** A project whose stack requires signed approvals (`require`), alice being the approver. */
async function approvalsProject(ctx: Mocha.Context, require: string[]): Promise<{ project: TempProject; signers: Signers }> {
  const project = tempProject(await pulumiOrSkip(ctx));
  const signers = makeSigners(["alice"]);
  const stackDir = path.join(project.dir, "stacks", "dev");
  fs.writeFileSync(path.join(stackDir, "allowed_signers"), signers.allowedSigners(["alice"]));
  const stackFile = path.join(stackDir, "stack.yaml");
  const doc = parse(fs.readFileSync(stackFile, "utf8"));
  doc.policy = { approvals: { require, approvers: ["alice"], allowedSigners: "allowed_signers" } };
  fs.writeFileSync(stackFile, stringify(doc));
  return { project, signers };
}

/** alice's signed approval of `op` to `to`, as `stackpin approve` writes it. */
async function approval(project: TempProject, signers: Signers, op: string, to: string, name: string): Promise<string> {
  const out = path.join(project.dir, name);
  const r = await project.cli(["approve", "--stack", "dev", "--op", op, "--to", to, "--key", signers.key("alice"), "--out", out, "--yes"]);
  assert.equal(r.code, ExitCode.ok, r.stderr);
  return out;
}

/** Tears the project down (asserting nothing is left) and removes the keys. */
async function removeProject(project: TempProject | undefined, signers: Signers | undefined): Promise<void> {
  try {
    await project?.teardown();
  } finally {
    signers?.remove();
  }
}

async function served(endpoint: string): Promise<string> {
  return ((await (await fetch(`${endpoint}/`)).json()) as { message: string }).message;
}

describe("a rollback re-applies what ran, never a version file as it is now", function () {
  let project: TempProject;
  let signers: Signers;

  before(async function () {
    ({ project, signers } = await approvalsProject(this, ["deploy"]));
    for (const v of ["v1", "v2"]) {
      const file = await approval(project, signers, "deploy", v, `deploy-${v}.yaml`);
      const r = await project.cli(["deploy", "--stack", "dev", "--version", v, "--yes", "--approval-file", file]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
  });
  after(async () => removeProject(project, signers));

  it("a version never applied is not a rollback target (exit 4, nothing changed); deploying it needs the deploy's approval", async () => {
    const v2 = parse(fs.readFileSync(path.join(project.dir, "stacks", "dev", "v2.yaml"), "utf8"));
    project.writeVersion("v99", stringify({ ...v2, version: "v99", config: { ...v2.config, message: "hello from v99" } }));
    const digest = project.stateDigest();
    let r = await project.cli(["rollback", "--stack", "dev", "--to", "v99", "--yes"]);
    assert.equal(r.code, ExitCode.unknownVersion, r.stderr);
    assert.match(r.stderr, /v99 was never applied to stack dev, so there is nothing to roll back to: a rollback re-applies what ran\. Deploy it instead/);
    r = await project.cli(["preview", "--stack", "dev", "--to", "v99"]);
    assert.equal(r.code, ExitCode.unknownVersion, r.stderr);
    r = await project.cli(["deploy", "--stack", "dev", "--version", "v99", "--yes"]);
    assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
    assert.equal(project.stateDigest(), digest, "the refusals changed the backend");
  });

  it("after v1.yaml is edited, the preview shows the edit and the rollback serves what ran", async () => {
    const file = path.join(project.dir, "stacks", "dev", "v1.yaml");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace("message: hello from v1", "message: edited after review"));
    const plan = json(await project.cli(["preview", "--stack", "dev", "--to", "v1", "--json"]));
    assert.ok(
      plan.warnings.some((w: string) => /^v1\.yaml differs from what ran at revision 1 \(message: ran "hello from v1", the file says "edited after review"\): this re-applies what ran/.test(w)),
      plan.warnings.join("\n"),
    );
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "v1", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.equal(await served(json(r).outputs.endpoint.value), "hello from v1");
    // Applying the file as it is now is a deploy, with a deploy's approval.
    assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"])).code, ExitCode.approvalRequired);
  });
});

describe("a history longer than the engine's first page: every update, true revisions", function () {
  let project: TempProject;
  let signers: Signers;
  let usedApproval: string;
  let pulumi: PulumiCli;
  const updates = 25;

  before(async function () {
    pulumi = await pulumiOrSkip(this);
    ({ project, signers } = await approvalsProject(this, ["rollback"]));
    for (const v of ["v1", "v2"]) assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", v, "--yes"])).code, ExitCode.ok);
    usedApproval = await approval(project, signers, "rollback", "v1", "rollback-v1.yaml");
    let r = await project.cli(["rollback", "--stack", "dev", "--to", "v1", "--yes", "--approval-file", usedApproval]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    // A stack's life: operators' own refreshes (updates outside stackpin), then re-deploys of the live version.
    const ctx = await openEnvironment({ stack: "dev", projectDir: project.dir, passphrase: { value: demoPassphrase }, pulumi, pulumiHome: project.env.PULUMI_HOME, actor: "operator" });
    const engine = await ctx.openEngine({ create: false });
    try {
      for (let n = 4; n <= updates - 2; n++) await engine.refreshClearingPendingCreates(`an operator's refresh ${n}`);
    } finally {
      engine.close();
    }
    for (let n = updates - 1; n <= updates; n++) {
      r = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
  });
  after(async () => removeProject(project, signers));

  it(`history lists all ${updates} updates with their true revisions, and status names the newest`, async () => {
    const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.deepEqual(
      history.map((h: { revision: number }) => h.revision),
      Array.from({ length: updates }, (_, i) => updates - i),
    );
    assert.deepEqual([history[updates - 3].op, history[updates - 3].to], ["rollback", "v1"]);
    assert.equal(json(await project.cli(["status", "--stack", "dev", "--json"])).revision, updates);
  });

  it("the history read from the backend's own records is the Pulumi CLI's `stack history --json`, all of it", async () => {
    const ctx = await openEnvironment({ stack: "dev", projectDir: project.dir, passphrase: { value: demoPassphrase }, pulumi, pulumiHome: project.env.PULUMI_HOME, actor: "operator" });
    const direct = await readBackendHistory(`file://${project.stateDir}`, ctx.stack.project, "dev");
    const stack = { project: ctx.stack.project, name: "dev", encryptionsalt: ctx.stack.settings.encryptionsalt };
    const cli = JSON.parse(await operatorPulumi(project, pulumi, stack, ["stack", "history", "--json", "--page-size", "500"]));
    assert.equal(direct?.length, updates);
    // As JSON, dates and all (the CLI prints whole seconds as `.000Z`).
    assert.deepEqual(JSON.parse(JSON.stringify(direct)), cli);
    assert.ok(direct!.some((u) => Object.values(u.config ?? {}).some((c) => c.secret)), "no secret config in the compared history");
  });

  it(`check --all on ${updates} updates: the way back to v2 is read from the oldest page, with the approval it needs`, async () => {
    const started = Date.now();
    const r = await project.cli(["check", "--stack", "dev", "--all", "--json"]);
    const ms = Date.now() - started;
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const report = json(r);
    assert.equal(report.revision, updates);
    assert.deepEqual(report.targets.map((t: { version: string }) => t.version), ["v2"]);
    const legs = Object.fromEntries(report.targets[0].legs.map((l: { leg: string; detail: string }) => [l.leg, l.detail]));
    assert.match(legs.config, /the config that ran at revision 2 is recorded/);
    assert.match(legs.approvals, /needs rollback \(required by the stack policy\), signed.*; this machine verifies them with .*allowed_signers/);
    process.stderr.write(`      [figures] check --all on ${updates} updates: ${(ms / 1000).toFixed(1)} s for the command (${report.targets.length} way back, ${(report.targets[0].durationMs / 1000).toFixed(1)} s of it)\n`);
  });

  it("a plan previewed before two more applies is refused (exit 7, nothing changed)", async () => {
    const preview = json(await project.cli(["preview", "--stack", "dev", "--to", "v2", "--json"]));
    assert.equal(preview.baseRevision, updates);
    for (let i = 0; i < 2; i++) assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"])).code, ExitCode.ok);
    const fresh = await approval(project, signers, "rollback", "v2", "rollback-v2.yaml");
    const digest = project.stateDigest();
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes", "--approval-file", fresh, "--expect-plan", preview.planDigest]);
    assert.equal(r.code, ExitCode.concurrentOperation, r.stderr);
    assert.equal(project.stateDigest(), digest);
    const ok = await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes", "--approval-file", fresh]);
    assert.equal(ok.code, ExitCode.ok, ok.stderr);
  });

  it("an approval used at revision 3 is refused as a replay, however many updates later", async () => {
    const digest = project.stateDigest();
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "v1", "--yes", "--approval-file", usedApproval]);
    assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
    assert.match(r.stderr, /already used: approval [0-9a-f-]{36} by alice was used by revision 3 \(rollback v2 -> v1\)/);
    assert.equal(project.stateDigest(), digest);
  });
});
