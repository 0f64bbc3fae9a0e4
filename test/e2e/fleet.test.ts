import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { ExitCode } from "../../lib/errors";
import { CliRun, json, pulumiOrSkip, TempProject, tempProject } from "./harness";

/**
 * Fleet rollback on the real engine: six local stacks at mixed versions, rolled back in waves. One
 * stack's target version fails its smoke check after the apply, which halts the waves after it.
 */
describe("fleet rollback: six stacks, waves, a canary and a halt (real engine)", function () {
  let project: TempProject;
  const stacks = ["prod-a", "prod-b", "prod-c", "prod-d", "prod-e", "prod-f"];
  // What each stack is deployed through: the last is live, `previous` is the one before it.
  const paths: Record<string, string[]> = {
    "prod-a": ["v1", "v2"],
    "prod-b": ["v1", "v2"],
    "prod-c": ["v1", "v3"],
    "prod-d": ["v1", "v2", "v3"],
    "prod-e": ["v1", "v2", "v3"],
    "prod-f": ["v1", "v3"],
  };
  const ok = (r: CliRun, what: string) => assert.equal(r.code, ExitCode.ok, `${what}: exit ${r.code}\n${r.stderr}`);
  const newest = async (stack: string) => json(await project.cli(["history", "--stack", stack, "--json"]))[0];

  before(async function () {
    project = tempProject(await pulumiOrSkip(this), { stack: "prod-a" });
    const a = path.join(project.dir, "stacks", "prod-a");
    // A good v3 (the demo's v3 is a broken release): v2's config with its own message.
    const v2 = fs.readFileSync(path.join(a, "v2.yaml"), "utf8");
    fs.writeFileSync(path.join(a, "v3.yaml"), v2.replace("version: v2", "version: v3").replace("hello from v2", "hello from v3"));
    for (const s of stacks.slice(1)) fs.cpSync(a, path.join(project.dir, "stacks", s), { recursive: true });
    // prod-e's v2 fails its smoke check: its deploy applies and fails verification (exit 11), and a rollback
    // to it later re-applies what ran and fails verification again.
    const e2 = path.join(project.dir, "stacks", "prod-e", "v2.yaml");
    fs.writeFileSync(e2, fs.readFileSync(e2, "utf8").replace('run: curl -fsS "$ENDPOINT/"', 'run: curl -fsS "$ENDPOINT/no-such-page"'));
    // Two stacks at a time, each through its versions in order.
    const queue = [...stacks];
    const worker = async () => {
      for (let s = queue.shift(); s; s = queue.shift()) {
        for (const v of paths[s]) {
          const r = await project.cli(["deploy", "--stack", s, "--version", v, "--yes"]);
          if (s === "prod-e" && v === "v2") assert.equal(r.code, ExitCode.verificationFailed, `deploy v2 to prod-e: exit ${r.code}\n${r.stderr}`);
          else ok(r, `deploy ${v} to ${s}`);
        }
      }
    };
    await Promise.all([worker(), worker()]);
  });

  after(async () => {
    if (!project) return;
    for (const s of stacks.slice(1)) {
      if (fs.existsSync(path.join(project.stateDir, ".pulumi", "stacks"))) {
        const r = await project.cli(["destroy", "--stack", s, "--yes"]);
        assert.ok(r.code === ExitCode.ok || r.code === ExitCode.unknownStack, `destroy ${s}: ${r.stderr}`);
      }
    }
    await project.teardown();
  });

  it("refuses a fleet one of whose stacks cannot be previewed, and an empty glob: nothing changed anywhere", async () => {
    const before = project.stateDigest();
    const r = await project.cli(["rollback", "--stacks", "prod-*", "--to", "v9", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.fleetIncomplete, r.stderr);
    const doc = json(r).error;
    assert.match(doc.message, /6 of 6 stack\(s\) could not be previewed.*no stack was rolled back\. Nothing was changed\./s);
    assert.deepEqual(doc.details.results.map((x: any) => [x.stack, x.status, x.exitCode]), stacks.map((s) => [s, "failed", ExitCode.unknownVersion]));
    // Each stack's own refusal, as its preview raised it, in the results and the preview table.
    for (const x of doc.details.results) assert.match(x.error, new RegExp(`^version v9 not found for stack ${x.stack}; known: v1, v2, v3$`), JSON.stringify(x));
    assert.deepEqual(doc.details.previews.map((p: any) => p.error), doc.details.results.map((x: any) => ({ exitCode: x.exitCode, message: x.error })));
    const none = await project.cli(["rollback", "--stacks", "staging-*", "--to", "previous", "--yes"]);
    assert.equal(none.code, ExitCode.unknownStack, none.stderr);
    assert.match(none.stderr, /stack "staging-\*" not found; known: prod-a, prod-b/);
    assert.equal(project.stateDigest(), before, "the backend must be unchanged");
  });

  it("refuses to apply a plan other than the one previewed (--expect-plan): exit 7, nothing changed", async () => {
    const before = project.stateDigest();
    const r = await project.cli(["rollback", "--stack", "prod-a", "--to", "v1", "--expect-plan", "sha256:0000", "--yes"]);
    assert.equal(r.code, ExitCode.concurrentOperation, r.stderr);
    assert.match(r.stderr, /stack prod-a changed since the plan was previewed: the plan now is sha256:[0-9a-f]{64}, the preview was sha256:0000.*Nothing was changed\./);
    assert.equal(project.stateDigest(), before);
  });

  it("rolls back in waves (canary, then three at once), halts after a stack fails verification, and says so per stack", async () => {
    const fleetFile = path.join(project.dir, "fleet.yaml");
    fs.writeFileSync(
      fleetFile,
      ["waves:", "  - name: canary", "    stacks: [prod-a]", "  - name: eu", "    concurrency: 3", "    stacks: [prod-b, prod-c, prod-e]", "  - name: us", "    stacks: [prod-d, prod-f]", ""].join("\n"),
    );
    const r = await project.cli(["rollback", "--fleet", fleetFile, "--to", "previous", "--yes", "--json", "--reason", "error rate 7% after the release"]);
    assert.equal(r.code, ExitCode.fleetIncomplete, r.stderr);
    // The preview table came first, then the waves in order.
    assert.match(r.stderr, /fleet rollback preview/);
    const previewAt = r.stderr.indexOf("fleet rollback preview");
    assert.ok(previewAt < r.stderr.indexOf("[prod-a] rolling back v2 -> v1"), "preview before any rollback");
    assert.ok(r.stderr.indexOf("[prod-a] rolled back to v1") < r.stderr.indexOf("fleet: wave eu"), "the canary finishes before the next wave starts");
    assert.match(r.stderr, /\[prod-e\] FAILED \(exit 11\): v2 failed verification on stack prod-e/);
    // Each stack's own progress as the CLI renders it for one stack, every line under the stack's name.
    assert.match(r.stderr, /^\[prod-a\] ▸ resolving v1 for prod-a$/m);
    assert.match(r.stderr, /^\[prod-e\] {3}✗ smoke: home page answers: /m, "prod-e's failed smoke check, in its own progress");
    assert.doesNotMatch(r.stderr, /^ *[▸✓✗…] /mu, "no stack's progress line without its stack's name");

    const result = json(r).error.details;
    const row = (s: string) => result.results.find((x: any) => x.stack === s);
    assert.deepEqual(result.previews.map((p: any) => [p.stack, p.from, p.to]), [
      ["prod-a", "v2", "v1"], ["prod-b", "v2", "v1"], ["prod-c", "v3", "v1"], ["prod-e", "v3", "v2"], ["prod-d", "v3", "v2"], ["prod-f", "v3", "v1"],
    ]);
    for (const s of ["prod-a", "prod-b", "prod-c"]) {
      assert.equal(row(s).status, "succeeded", JSON.stringify(row(s)));
      assert.equal(row(s).verified, true);
      assert.ok(row(s).revision > 0);
    }
    assert.equal(row("prod-e").status, "failed");
    assert.equal(row("prod-e").exitCode, ExitCode.verificationFailed);
    assert.deepEqual([row("prod-d").status, row("prod-f").status], ["halted", "halted"]);
    assert.equal(result.haltedBy, "prod-e");
    assert.deepEqual([result.succeeded, result.failed, result.halted], [3, 1, 2]);

    // Each stack's own history says what happened to it; the halted ones were not touched.
    for (const [s, to] of [["prod-a", "v1"], ["prod-b", "v1"], ["prod-c", "v1"], ["prod-e", "v2"]] as const) {
      const h = await newest(s);
      assert.equal(h.op, "rollback", `${s}: ${JSON.stringify(h)}`);
      assert.equal(h.to, to);
      assert.equal(h.reason, "error rate 7% after the release");
      assert.ok(fs.existsSync(row(s).incident), `${s}: incident record ${row(s).incident}`);
    }
    assert.match((await newest("prod-e")).verification ?? "", /^failed/);
    assert.equal((await newest("prod-a")).heldToPlan, true, "each stack applied exactly its previewed plan");
    for (const s of ["prod-d", "prod-f"]) {
      const h = await newest(s);
      assert.deepEqual([h.op, h.to], ["deploy", "v3"], `${s} must be untouched`);
    }
  });

  it("--stacks GLOB: the first stack goes alone as the canary, `previous` resolves per stack, exit 0 when all succeed", async () => {
    const r = await project.cli(["rollback", "--stacks", "prod-[df]", "--to", "previous", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.match(r.stderr, /fleet: 2 stack\(s\) in 2 wave\(s\): canary \[prod-d\], then rest \[prod-f\]/);
    assert.match(r.stdout, /fleet rollback to previous: 2 succeeded, 0 failed, 0 not started/);
    assert.deepEqual([(await newest("prod-d")).to, (await newest("prod-f")).to], ["v2", "v1"]);
  });
});
