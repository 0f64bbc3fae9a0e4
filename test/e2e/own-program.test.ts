import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { ExitCode } from "../../lib/errors";
import { json, pulumiOrSkip, TempProject } from "./harness";
import { ownProgramProject, writeProgram } from "./own-program";

describe("a project's own TypeScript program by path (program: ./infra/checkout), on the real engine", function () {
  this.timeout(600_000);
  let project: TempProject;
  const cli = (args: string[]) => project.cli(args);
  const figures: string[] = [];
  const timed = async (what: string, args: string[]) => {
    const started = Date.now();
    const r = await cli(args);
    figures.push(`${what} ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return r;
  };

  before(async function () {
    project = ownProgramProject(await pulumiOrSkip(this));
  });
  after(async () => {
    if (figures.length) process.stderr.write(`      [figures] own program: ${figures.join(", ")}\n`);
    await project?.teardown();
  });

  it("deploys v1 from the TypeScript sources, with the config the program reads through new pulumi.Config()", async () => {
    const r = await timed("deploy v1", ["deploy", "--stack", "checkout", "--version", "v1", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const result = json(r);
    assert.equal(result.to, "v1");
    assert.equal(result.outputs.greeting.value, "hello from v1");
    assert.equal(result.outputs.replicas.value, 1);
    assert.equal(result.outputs.noteText.value, "hello from v1", "the dynamic resource's output");
    assert.equal(result.outputs.release.value, "v1", "stackpin:version reaches the program");
    // Compiled in memory: nothing was written beside the sources.
    assert.deepEqual(fs.readdirSync(path.join(project.dir, "infra", "checkout")).sort(), ["index.ts", "note.ts"]);
  });

  it("deploys v2, then rolls back to v1; history has the three applies", async () => {
    const v2 = await timed("deploy v2", ["deploy", "--stack", "checkout", "--version", "v2", "--yes", "--json"]);
    assert.equal(v2.code, ExitCode.ok, v2.stderr);
    assert.equal(json(v2).outputs.replicas.value, 2);
    const back = await timed("rollback to v1", ["rollback", "--stack", "checkout", "--to", "v1", "--yes", "--json", "-r", "v2 misbehaves"]);
    assert.equal(back.code, ExitCode.ok, back.stderr);
    const status = json(await cli(["status", "--stack", "checkout", "--json"]));
    assert.equal(status.liveVersion, "v1");
    assert.equal(status.outputs.greeting.value, "hello from v1");
    assert.equal(status.outputs.noteText.value, "hello from v1");
    assert.equal(status.outputs.replicas.value, 1);
    const history = json(await cli(["history", "--stack", "checkout", "--json"])) as { op: string; from?: string; to?: string; result: string }[];
    assert.deepEqual(
      history.map((h) => `${h.op} ${h.from ?? "-"} -> ${h.to} ${h.result}`),
      ["rollback v2 -> v1 succeeded", "deploy v1 -> v2 succeeded", "deploy - -> v1 succeeded"],
    );
  });

  it("checks version files against the schema the program exports: exit 5 naming the key, backend unchanged", async () => {
    project.writeVersion("v3", "version: v3\nconfig:\n  greeting: hi\n  replicas: many\n  replica: 2\n");
    const before = project.stateDigest();
    const r = await cli(["deploy", "--stack", "checkout", "--version", "v3", "--yes"]);
    assert.equal(r.code, ExitCode.invalidVersionFile, r.stderr);
    assert.match(r.stderr, /v3\.yaml is invalid/);
    assert.match(r.stderr, /config\.replica: not a setting of program \.\/infra\/checkout; did you mean replicas\?/);
    assert.match(r.stderr, /config\.replicas: Invalid input: expected number, received string/);
    assert.equal(project.stateDigest(), before);
    fs.rmSync(path.join(project.dir, "stacks", "checkout", "v3.yaml"));
  });

  it("refuses a path with no module, a module with no default export and one that does not compile: exit 5, backend unchanged", async () => {
    writeProgram(project.dir, "infra/no-default", { "index.ts": "export const config = undefined;\nexport const answer = 42;\n" });
    writeProgram(project.dir, "infra/broken", { "index.ts": "export default async () => {\n  const x = ;\n};\n" });
    const stackYaml = path.join(project.dir, "stacks", "checkout", "stack.yaml");
    const original = fs.readFileSync(stackYaml, "utf8");
    const before = project.stateDigest();
    const cases: [string, RegExp][] = [
      ["./infra/missing", /program \.\/infra\/missing \(stack\.yaml's program\) cannot be used: no module at .*infra\/missing/],
      ["./infra/no-default", /has no default export function/],
      ["./infra/broken", /broken\/index\.ts:2:13: Expression expected/],
    ];
    for (const [program, message] of cases) {
      fs.writeFileSync(stackYaml, original.replace("./infra/checkout", program));
      const r = await cli(["rollback", "--stack", "checkout", "--to", "v2", "--yes"]);
      assert.equal(r.code, ExitCode.invalidVersionFile, `${program}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /Nothing was changed/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
      assert.equal(project.stateDigest(), before, `${program} changed the backend`);
    }
    fs.writeFileSync(stackYaml, original);
    figures.push(`${cases.length} bad programs refused with exit 5, backend unchanged`);
  });
});
