import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { ExitCode } from "../../lib/errors";
import { json, pulumiOrSkip, TempProject, tempProject } from "./harness";

describe("bad input gets a clear error, a documented exit code, and changes nothing", function () {
  let project: TempProject;

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
  });
  after(async () => project?.teardown());

  /** Runs a command that must fail, and asserts the exit code, the message, and that nothing changed. */
  async function refused(args: string[], code: number, message: RegExp, env?: NodeJS.ProcessEnv) {
    const before = project.stateDigest();
    const r = await project.cli(args, { env });
    assert.equal(r.code, code, `exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n\s+at .*\(.*\.js:\d+/, "no stack trace for a user's mistake");
    assert.equal(project.stateDigest(), before, "the backend state changed");
    const status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.equal(status.liveVersion, "v1");
    return r;
  }

  it("unknown stack: exit 3, naming the known stacks", async () => {
    await refused(["rollback", "--stack", "prod", "--to", "v1", "--yes"], ExitCode.unknownStack, /stack "prod" not found; known: dev/);
  });

  it("unknown version: exit 4, naming the known versions", async () => {
    await refused(["deploy", "--stack", "dev", "--version", "v41", "--yes"], ExitCode.unknownVersion, /version v41 not found for stack dev; known: v1, v2/);
    await refused(["rollback", "--stack", "dev", "--to", "v41", "--yes"], ExitCode.unknownVersion, /known: v1, v2/);
  });

  it("malformed YAML: exit 5, naming the file", async () => {
    project.writeVersion("v7", "version: v7\nconfig:\n  message: [unclosed\n");
    await refused(["deploy", "--stack", "dev", "--version", "v7", "--yes"], ExitCode.invalidVersionFile, /v7\.yaml is invalid, nothing was changed/);
  });

  it("a version file failing validation: exit 5, listing each problem", async () => {
    project.writeVersion("v8", "version: v8\nconfig:\n  message: 1\n  dbPassword:\n    secret: hunter2\nextra: true\n");
    const r = await refused(["deploy", "--stack", "dev", "--version", "v8", "--yes"], ExitCode.invalidVersionFile, /plain-text secrets are not allowed/);
    assert.match(r.stderr, /extra/);
    assert.ok(!r.stderr.includes("hunter2"));
  });

  it("missing passphrase: exit 6, saying which variable to set", async () => {
    await refused(
      ["rollback", "--stack", "dev", "--to", "v2", "--yes"],
      ExitCode.missingPassphrase,
      /set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE/,
      { PULUMI_CONFIG_PASSPHRASE: undefined },
    );
  });

  it("wrong passphrase: exit 6", async () => {
    await refused(["deploy", "--stack", "dev", "--version", "v2", "--yes"], ExitCode.missingPassphrase, /incorrect passphrase/, {
      PULUMI_CONFIG_PASSPHRASE: "not-the-passphrase",
    });
  });

  it("a rollback without --yes and no terminal to ask on: exit 9, after showing the plan", async () => {
    // v2 must have run on the stack to be a rollback target.
    for (const args of [["deploy", "--stack", "dev", "--version", "v2"], ["rollback", "--stack", "dev", "--to", "v1"]]) {
      const done = await project.cli([...args, "--yes"]);
      assert.equal(done.code, ExitCode.ok, done.stderr);
    }
    const r = await refused(["rollback", "--stack", "dev", "--to", "v2"], ExitCode.notConfirmed, /not confirmed/);
    assert.match(r.stderr, /rollback v1 -> v2 on stack dev/);
  });

  it("a stack never deployed: exit 3 for rollback, history and status", async () => {
    fs.cpSync(path.join(project.dir, "stacks", "dev"), path.join(project.dir, "stacks", "qa"), { recursive: true });
    await refused(["rollback", "--stack", "qa", "--to", "v1", "--yes"], ExitCode.unknownStack, /stack qa has never been deployed/);
    const r = await project.cli(["history", "--stack", "qa", "--json"]);
    assert.equal(r.code, ExitCode.unknownStack);
    assert.equal(json(r).error.code, "stack-not-deployed");
  });

  it("a missing flag: exit 2 with usage", async () => {
    await refused(["rollback", "--stack", "dev"], ExitCode.usage, /required option '-t, --to <version>' not specified/);
  });

  it("an operation while another holds the stack: exit 7, and the first one completes", async () => {
    // The first deploy pauses inside its update (holding the lock) until the test opens the gate, so the
    // second command meets the lock however slow the machine is.
    const gate = path.join(project.dir, "open-the-gate");
    project.writeVersion("v9", `version: v9\nconfig:\n  message: slow\n  rolloutHoldFile: ${gate}\n`);
    const first = project.start(["deploy", "--stack", "dev", "--version", "v9", "--yes"]);
    // The update's own step, after the apply line: the preview before it prints the same step while
    // nothing holds the stack yet.
    await first.waitFor(/▸ deploy [^\n]* on dev:[\s\S]*update app-settings/);
    let second;
    try {
      second = await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes"]);
    } finally {
      fs.writeFileSync(gate, "");
    }
    assert.equal(second.code, ExitCode.concurrentOperation, second.stderr);
    assert.match(second.stderr, /another operation is running on stack dev/);
    const firstResult = await first.done;
    assert.equal(firstResult.code, ExitCode.ok, firstResult.stderr);
    const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.deepEqual(history.map((h: any) => h.to), ["v9", "v1", "v2", "v1"], "the refused rollback left no entry");
  });
});
