import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { pulumiOrSkip, TempProject, tempProject } from "./harness";

// STACKPIN_DEBUG=timing (the benchmark's breakdown): every Pulumi CLI call an operation made, and a total;
// never an argument's value, so a secret passed to the CLI stays out of the output.
describe("STACKPIN_DEBUG=timing: the Pulumi CLI calls of one operation (real engine)", function () {
  let project: TempProject;

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
  });
  after(async () => project?.teardown());

  it("prints each call with its subcommand and time, then a total with the call count and peak RSS", async () => {
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"], { env: { STACKPIN_DEBUG: "timing" } });
    assert.equal(r.code, 0, r.stderr);
    const calls = [...r.stderr.matchAll(/^\[timing\] pulumi (.+): (\d+) ms$/gm)].map((m) => m[1]);
    assert.ok(calls.includes("up"), `no up among ${calls.join(", ")}`);
    // The history is read from the backend's own records, not through the CLI.
    assert.ok(!calls.includes("stack history"), `stack history among ${calls.join(", ")}`);
    assert.match(r.stderr, /^\[timing\] backend history \(\d+ updates\): \d+ ms$/m);
    const total = /^\[timing\] total: (\d+) pulumi calls, \d+ ms in them \(.*\); \d+ backend reads, \d+ ms; process \d+ ms, peak RSS \d+ MB$/m.exec(r.stderr);
    assert.ok(total, `no total line:\n${r.stderr}`);
    assert.equal(Number(total[1]), calls.length);
  });

  it("status and history start no Pulumi CLI: the history is read from the backend's own records", async () => {
    for (const verb of ["status", "history"]) {
      const r = await project.cli([verb, "--stack", "dev"], { env: { STACKPIN_DEBUG: "timing" } });
      assert.equal(r.code, 0, r.stderr);
      const calls = [...r.stderr.matchAll(/^\[timing\] pulumi (.+): \d+ ms$/gm)].map((m) => m[1]);
      assert.deepEqual(calls, [], `${verb} made ${calls.length} Pulumi CLI calls`);
      assert.match(r.stderr, /^\[timing\] backend history \(1 updates\): \d+ ms$/m);
      assert.match(r.stderr, /^\[timing\] total: 0 pulumi calls, 0 ms in them \(\); 1 backend reads, /m);
    }
  });

  it("status and history load nothing but the CLI's bundle: no Automation API, AWS SDK, vega or module of dist/lib", async () => {
    // Node's own record of the modules the process required, written as it exits.
    const hook = path.join(project.dir, "modules-loaded.js");
    const list = path.join(project.dir, "modules-loaded.json");
    fs.writeFileSync(hook, `process.on("exit", () => require("node:fs").writeFileSync(${JSON.stringify(list)}, JSON.stringify(Object.keys(require.cache))));\n`);
    try {
      for (const args of [["status"], ["history"], ["status", "--json"], ["history", "--json"]]) {
        const r = await project.cli([...args, "--stack", "dev"], { env: { NODE_OPTIONS: `--require ${hook}` } });
        assert.equal(r.code, 0, r.stderr);
        const loaded = (JSON.parse(fs.readFileSync(list, "utf8")) as string[]).filter((f) => f !== hook);
        assert.deepEqual(loaded, [path.join(packageRoot(), "dist", "lib", "cli", "main.js")], `${args.join(" ")} loaded:\n${loaded.join("\n")}`);
      }
    } finally {
      fs.rmSync(hook, { force: true });
      fs.rmSync(list, { force: true });
    }
  });

  it("a rollback makes two Pulumi CLI calls: the preview it is held to and the update", async () => {
    const deploy = await project.cli(["deploy", "--stack", "dev", "--version", "v2", "--yes"]);
    assert.equal(deploy.code, 0, deploy.stderr);
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "v1", "--yes"], { env: { STACKPIN_DEBUG: "timing" } });
    assert.equal(r.code, 0, r.stderr);
    const calls = [...r.stderr.matchAll(/^\[timing\] pulumi (.+): \d+ ms$/gm)].map((m) => m[1]);
    // The preview saved as the update plan, and the update. The checkpoint (opening the stack, and the
    // outputs the update left) and the history (the read, the stale-plan check) come from the backend's
    // own files.
    assert.deepEqual([...calls].sort(), ["preview", "up"], calls.join(", "));
    assert.equal([...r.stderr.matchAll(/^\[timing\] backend history/gm)].length, 2, r.stderr);
    assert.equal([...r.stderr.matchAll(/^\[timing\] backend checkpoint \(\d+ KiB\): \d+ ms$/gm)].length, 2, r.stderr);
    // The outputs the command prints are the ones the update left, secrets masked.
    assert.match(r.stdout, /version: v1/);
  });

  it("names a secret's config call without its value", async () => {
    const value = "plainwordsecret";
    const r = await project.cli(["secret", "set", "--stack", "dev", "--version", "v2", "--key", "plainkey"], {
      env: { STACKPIN_DEBUG: "timing" },
      input: `${value}\n`,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^\[timing\] pulumi config set: \d+ ms$/m);
    assert.ok(!`${r.stdout}${r.stderr}`.includes(value), "the secret's value was printed");
  });

  it("prints nothing of the sort without the variable", async () => {
    const r = await project.cli(["status", "--stack", "dev"]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /\[timing\]/);
  });
});
