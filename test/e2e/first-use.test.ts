import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ExitCode } from "../../lib/errors";
import { filesUnder, json, pulumiOrSkip, TempProject, tempProject } from "./harness";

/**
 * A stack that was never deployed: previewing it, or a first deploy that is refused, creates nothing in
 * the backend and leaves `stack.yaml` byte for byte as it was; the first deploy that applies creates the
 * stack and writes the passphrase salt, and says so.
 */
describe("a stack's first use: a preview or a refused first deploy creates nothing", function () {
  let project: TempProject;
  let stackYaml: string;
  let original: Buffer;

  /** The backend's files for this stack's project, and the scratch backends a preview may have left. */
  const traces = () => [
    ...filesUnder(project.stateDir).filter((f) => f.includes("stackpin-qa")),
    ...fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("stackpin-plan-qa-")),
  ];

  before(async function () {
    project = tempProject(await pulumiOrSkip(this), { stack: "qa" });
    const dir = path.join(project.dir, "stacks", "qa");
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f));
    stackYaml = path.join(dir, "stack.yaml");
    // No encryptionsalt yet: Pulumi makes one when the stack is created.
    fs.writeFileSync(stackYaml, "# a new stack\nprogram: local\nproject: stackpin-qa\nsecretsProvider: passphrase\n");
    project.writeVersion("v1", "version: v1\nconfig:\n  message: hello from qa\n");
    original = fs.readFileSync(stackYaml);
  });
  after(async () => project?.teardown());

  it("preview of a stack never deployed shows the creates, and leaves no stack in the backend and stack.yaml unchanged", async () => {
    const before = project.stateDigest();
    const r = await project.cli(["preview", "--stack", "qa", "--version", "v1", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const plan = json(r);
    assert.equal(plan.from, undefined);
    assert.ok(plan.resourceChanges.some((s: any) => s.op === "create" && s.name === "traffic-switch"), JSON.stringify(plan.resourceChanges));
    assert.equal(project.stateDigest(), before, "the preview changed the backend");
    assert.deepEqual(traces(), [], "the preview left a stack behind");
    assert.ok(fs.readFileSync(stackYaml).equals(original), "the preview rewrote stack.yaml");
    const status = await project.cli(["status", "--stack", "qa", "--json"]);
    assert.equal(status.code, ExitCode.unknownStack, "the stack still does not exist");
  });

  it("a first deploy not confirmed (no terminal, no --yes) shows the plan, exits 9, and creates nothing", async () => {
    const before = project.stateDigest();
    const r = await project.cli(["deploy", "--stack", "qa", "--version", "v1"]);
    assert.equal(r.code, ExitCode.notConfirmed, r.stderr);
    assert.match(r.stderr, /deploy \(nothing live\) -> v1 on stack qa/);
    assert.equal(project.stateDigest(), before, "the refused deploy changed the backend");
    assert.deepEqual(traces(), []);
    assert.ok(fs.readFileSync(stackYaml).equals(original), "the refused deploy rewrote stack.yaml");
  });

  it("a first deploy with bad input exits 5 and creates nothing", async () => {
    project.writeVersion("v2", "version: v2\nconfig:\n  message: 1\n  replica: 3\n");
    const before = project.stateDigest();
    const r = await project.cli(["deploy", "--stack", "qa", "--version", "v2", "--yes"]);
    assert.equal(r.code, ExitCode.invalidVersionFile, r.stderr);
    assert.equal(project.stateDigest(), before);
    assert.deepEqual(traces(), []);
    assert.ok(fs.readFileSync(stackYaml).equals(original));
    fs.rmSync(path.join(project.dir, "stacks", "qa", "v2.yaml"));
  });

  it("the first deploy that applies creates the stack, writes the salt into stack.yaml, and says so", async () => {
    const r = await project.cli(["deploy", "--stack", "qa", "--version", "v1", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.match(r.stderr, /first deploy of stack qa: created it in file:\/\/.*; wrote its passphrase salt \(encryptionsalt\) to .*stack\.yaml: commit it/);
    assert.match(fs.readFileSync(stackYaml, "utf8"), /^encryptionsalt: v1:/m);
    assert.equal(json(await project.cli(["status", "--stack", "qa", "--json"])).liveVersion, "v1");
    assert.deepEqual(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("stackpin-plan-qa-")), []);
  });
});
