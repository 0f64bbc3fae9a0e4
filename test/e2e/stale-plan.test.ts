import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { holderHere } from "../../lib/engine/interruption";
import type { PulumiCli } from "../../lib/engine/pulumi-cli";
import { openEnvironment } from "../../lib";
import type { EnvironmentContext } from "../../lib/environment";
import { ExitCode, StackpinError } from "../../lib/errors";
import { recordsFile } from "../../lib/records/ledger";
import { rollback } from "../../lib/operations/rollback";
import { demoPassphrase, json, operatorPulumi, pulumiOrSkip, TempProject, tempProject } from "./harness";

describe("plans applied only as confirmed, and records no concurrent writer loses (real engine)", function () {
  let project: TempProject;
  let pulumi: PulumiCli;
  const library = (actor: string): Promise<EnvironmentContext> =>
    openEnvironment({ stack: "dev", projectDir: project.dir, passphrase: { value: demoPassphrase }, pulumi, pulumiHome: project.env.PULUMI_HOME, actor });

  before(async function () {
    pulumi = await pulumiOrSkip(this);
    project = tempProject(pulumi);
    for (const version of ["v1", "v2"]) {
      const r = await project.cli(["deploy", "--stack", "dev", "--version", version, "--yes"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
  });
  after(async () => project?.teardown());

  it("refuses a rollback planned before another operation applied (exit 7), leaving the backend as the other left it", async () => {
    const second = await library("bob");
    let afterFirst = "";
    let planned: { from?: string; to: string } | undefined;
    const attempt = rollback(second, {
      to: "v1",
      reason: "bob answers the same incident",
      // Bob looks at his plan; meanwhile Alice rolls back from her terminal, and Bob then says yes.
      confirm: async (plan) => {
        planned = { from: plan.from, to: plan.to };
        const alice = await project.cli(["rollback", "--stack", "dev", "--to", "v1", "--yes", "--reason", "alice answers the incident"]);
        assert.equal(alice.code, ExitCode.ok, alice.stderr);
        afterFirst = project.stateDigest();
        return true;
      },
    });
    const err = await attempt.then(
      () => assert.fail("the stale plan was applied"),
      (e: unknown) => e,
    );
    assert.deepEqual(planned, { from: "v2", to: "v1" });
    assert.ok(err instanceof StackpinError, String(err));
    assert.equal(err.exitCode, ExitCode.concurrentOperation);
    assert.equal(err.code, "stale-plan");
    assert.match(err.message, /^stack changed since the plan: v2 -> v1 was planned from revision 2, the stack is at 3 .*Nothing was changed\.$/s);
    assert.equal(project.stateDigest(), afterFirst, "the refused plan changed the backend");
    const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.deepEqual(history.map((h: { revision: number; op: string; to: string; who: string }) => [h.revision, h.op, h.to, h.who]), [
      [3, "rollback", "v1", "e2e"],
      [2, "deploy", "v2", "e2e"],
      [1, "deploy", "v1", "e2e"],
    ]);
    process.stderr.write(`      [figures] stale plan: refused with exit ${err.exitCode}, backend digest unchanged after the other rollback, history ${history.length} entries\n`);
  });

  it("holds a confirmed rollback to the update plan that was shown", async () => {
    const ctx = await library("bob");
    let shown: string[] = [];
    const result = await rollback(ctx, {
      to: "v2",
      reason: "bob, after looking",
      confirm: async (plan) => {
        shown = plan.resourceChanges.map((s) => `${s.op} ${s.name}`).sort();
        return true;
      },
    });
    assert.equal(result.verification?.passed, true);
    assert.deepEqual(result.resourceChanges.map((s) => `${s.op} ${s.name}`).sort(), shown, "the update did other than the plan shown");
    const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    // Every apply is held to the plan its guard previewed: --yes ones too.
    assert.deepEqual(history.map((h: { revision: number; heldToPlan?: boolean }) => [h.revision, h.heldToPlan ?? false]), [
      [4, true],
      [3, true],
      [2, true],
      [1, true],
    ]);
    process.stderr.write(`      [figures] confirmed rollback held to its update plan: ${shown.length} steps shown, ${result.resourceChanges.length} applied\n`);
  });

  it("records a frozen deploy as refused in the audit trail without touching the state", async () => {
    assert.equal((await project.cli(["freeze", "--stack", "dev", "--reason", "incident 7"])).code, ExitCode.ok);
    const digest = project.stateDigest();
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v2", "--yes"]);
    assert.equal(r.code, ExitCode.frozen, r.stderr);
    assert.equal(project.stateDigest(), digest, "a refusal changed the state or stackpin's records");
    const trail = json(await project.cli(["audit", "show", "--stack", "dev", "--json"]));
    const last = trail.entries.at(-1);
    assert.deepEqual([last.op, last.to, last.result], ["deploy", "v2", "refused"]);
    assert.match(last.detail, /deploys to stack dev are frozen .*incident 7/);
    assert.equal((await project.cli(["audit", "verify", "--stack", "dev"])).code, ExitCode.ok);
    assert.equal((await project.cli(["unfreeze", "--stack", "dev", "--reason", "over"])).code, ExitCode.ok);
  });

  it("reads an older stackpin's tags (verifications by revision, freeze, baseline) and moves them into its records on the next write", async () => {
    const ctx = await library("e2e");
    const file = recordsFile(project.stateDir, ctx.stack.project, "dev");
    fs.rmSync(file);
    const engine = await ctx.openEngine({ create: false });
    try {
      await engine.setTags({
        "stackpin:verify:1": "failed: recorded by an older stackpin",
        "stackpin:verify:2": "passed",
        "stackpin:freeze": JSON.stringify({ reason: "old freeze", by: "carol", at: "2026-11-01T00:00:00.000Z" }),
        "stackpin:baseline:p99": "0.5",
      });
    } finally {
      engine.close();
    }
    const byRevision = (h: Array<{ revision: number; verification?: string }>) => Object.fromEntries(h.map((e) => [e.revision, e.verification]));
    let history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.deepEqual(byRevision(history), { 1: "failed: recorded by an older stackpin", 2: "passed", 3: undefined, 4: undefined });
    let status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.equal(status.freeze.reason, "old freeze");
    assert.equal(status.baselines.p99, 0.5);

    const r = await project.cli(["unfreeze", "--stack", "dev", "--reason", "moved", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.equal(json(r).lifted.reason, "old freeze");
    status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.equal(status.freeze, undefined);
    assert.equal(status.baselines.p99, 0.5);
    const reopened = await ctx.openEngine({ create: false });
    const tags = await reopened.tags().finally(() => reopened.close());
    assert.deepEqual(Object.keys(tags).filter((t) => /^stackpin:(verify|freeze|baseline|audit-head)/.test(t)), []);
    history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.deepEqual(byRevision(history), { 1: "failed: recorded by an older stackpin", 2: "passed", 3: undefined, 4: undefined });
    const records = JSON.parse(fs.readFileSync(file, "utf8"));
    assert.equal(records.migratedFromTags, true);
    assert.deepEqual(Object.values(records.verifications).map((v: any) => v.outcome).sort(), ["failed: recorded by an older stackpin", "passed"]);
    for (const [name, value] of Object.entries(tags)) {
      assert.ok(name.length <= 40 && value.length <= 256, `stack tag ${name} is past Pulumi Cloud's limits`);
    }
    assert.ok(fs.existsSync(path.join(project.stateDir, ".stackpin-audit", ctx.stack.project, "dev.head")));
  });
  it("compares the revision while holding the in-flight mark: an update landing between the plan and the mark is refused (exit 7)", async () => {
    const bob = await library("bob");
    const before = json(await project.cli(["status", "--stack", "dev", "--json"])).revision;
    // Once bob's plan is confirmed ("apply"), this test takes the records lock (as a live holder), so bob's
    // rollback waits at the write of its in-flight mark.
    const lock = `${recordsFile(project.stateDir, bob.stack.project, "dev")}.lock`;
    let applying!: () => void;
    const reachedApply = new Promise<void>((resolve) => (applying = resolve));
    const attempt = rollback(bob, {
      to: "v1",
      reason: "bob",
      onProgress: (e) => {
        if (e.type !== "phase" || e.phase !== "apply") return;
        fs.writeFileSync(lock, JSON.stringify({ ...holderHere(), token: "the test" }), { flag: "wx" });
        applying();
      },
    });
    const outcome = attempt.then(
      () => undefined,
      (e: unknown) => e,
    );
    try {
      await reachedApply;
      // Meanwhile an update outside stackpin lands: an operator's own `pulumi refresh`, which leaves no mark.
      await operatorPulumi(project, pulumi, { project: bob.stack.project, name: "dev", encryptionsalt: bob.stack.settings.encryptionsalt }, ["refresh", "--yes", "--skip-preview", "--message", "an operator's own refresh"]);
    } finally {
      fs.rmSync(lock, { force: true });
    }
    const err = await outcome;
    assert.ok(err instanceof StackpinError, `the plan from revision ${before} was applied after revision ${before + 1} landed`);
    assert.equal(err.code, "stale-plan");
    assert.equal(err.exitCode, ExitCode.concurrentOperation);
    const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.deepEqual([history[0].revision, history[0].op], [before + 1, "refresh"], "nothing was applied after the refresh");
  });
});
