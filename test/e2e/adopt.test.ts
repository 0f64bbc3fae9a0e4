import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import type { PulumiCli } from "../../lib/engine/pulumi-cli";
import { writeDynamicProviderPlugin } from "../../lib/engine/pulumi-cli";
import { ExitCode } from "../../lib/errors";
import { loadProgram } from "../../lib/engine/program-loader";
import { CliRun, demoPassphrase, filesUnder, json, pulumiOrSkip, TempProject, tempProject } from "./harness";
import { fileAppears, writeProgram } from "./own-program";

describe("adopt an existing Pulumi stack made with plain Automation API calls (real engine, file:// backend)", function () {
  this.timeout(600_000);
  let pulumi: PulumiCli;
  let project: TempProject;
  let teamDir = "";
  let team: Stack;
  // What the team's stack holds: a value that must never appear in plain text anywhere stackpin writes.
  const secret = `team-secret-${crypto.randomBytes(8).toString("hex")}`;
  const printed: string[] = [];
  const cli = async (args: string[]): Promise<CliRun> => {
    const r = await project.cli(args);
    printed.push(r.stdout, r.stderr);
    return r;
  };
  const stackFiles = () => filesUnder(path.join(project.dir, "stacks", "prod"));

  before(async function () {
    pulumi = await pulumiOrSkip(this);
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-adopt-empty-"));
    project = tempProject(pulumi, { stack: "prod", from: empty });
    fs.rmSync(empty, { recursive: true });
    writeProgram(project.dir);
    // The team's existing stack: their own checkout dir, their program run inline by the Automation API,
    // `config set` as they always did (numbers as strings), a secret, two updates of history.
    teamDir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-team-"));
    fs.mkdirSync(project.stateDir, { recursive: true });
    const program = loadProgram(project.dir, "./infra/checkout")({ stackName: "prod", stateDir: teamDir });
    const pluginDir = writeDynamicProviderPlugin(path.join(teamDir, "bin"));
    team = await LocalWorkspace.createOrSelectStack(
      { stackName: "prod", projectName: "checkout", program },
      {
        workDir: teamDir,
        pulumiCommand: pulumi.command,
        pulumiHome: project.env.PULUMI_HOME,
        envVars: { PATH: `${pluginDir}${path.delimiter}${process.env.PATH}`, PULUMI_CONFIG_PASSPHRASE: demoPassphrase, PULUMI_SKIP_UPDATE_CHECK: "true" },
        projectSettings: { name: "checkout", runtime: "nodejs", backend: { url: `file://${project.stateDir}` } },
        secretsProvider: "passphrase",
      },
    );
    await team.setAllConfig({ greeting: { value: "hello from the team" }, replicas: { value: "2" }, apiKey: { value: secret, secret: true } });
    await team.up({ message: "team: first" });
  });

  let adoptMs = 0;

  after(async () => {
    const files = filesUnder(project?.dir ?? "/nonexistent");
    const leaked = [...printed, ...files.map((f) => fs.readFileSync(f, "latin1"))].filter((t) => t.includes(secret));
    process.stderr.write(
      `      [figures] adopt: ${(adoptMs / 1000).toFixed(1)} s; the secret in plain text in ${leaked.length} of ${printed.length / 2} CLI runs' output and ${files.length} project files\n`,
    );
    await project?.teardown();
    if (teamDir) fs.rmSync(teamDir, { recursive: true, force: true });
    assert.equal(leaked.length, 0, "the team's secret appeared in plain text in stackpin's output or files");
  });

  it("refuses while a team member's update is running, with its operation pending in the checkpoint (exit 7), writing nothing", async () => {
    const hold = path.join(teamDir, "release-update");
    await team.setAllConfig({ greeting: { value: "hello again from the team" }, holdFile: { value: hold } });
    const update = team.up({ message: "team: second" });
    await fileAppears(`${hold}.waiting`, update);
    const r = await cli(["adopt", "--stack", "prod", "--as", "v1", "--program", "./infra/checkout", "--project", "checkout"]);
    fs.writeFileSync(hold, "go");
    await update;
    assert.equal(r.code, ExitCode.concurrentOperation, r.stderr);
    assert.match(r.stderr, /cannot adopt stack prod: an update is running or was interrupted \(1 pending operation\(s\): updating greeting-note\)/);
    assert.deepEqual(stackFiles(), []);
    // The team's update finished; its last one drops the hold setting (the resource is unchanged).
    await team.removeConfig("holdFile");
    await team.up({ message: "team: third" });
  });

  it("refuses config its program's schema does not accept (exit 5), writing nothing", async () => {
    writeProgram(project.dir, "infra/stricter", {
      "index.ts": `import { z } from "zod";\nexport const config = z.object({ greeting: z.string(), replicas: z.number().max(1), region: z.string() }).strict();\nexport default async () => ({});\n`,
    });
    const before = project.stateDigest();
    const r = await cli(["adopt", "--stack", "prod", "--as", "v1", "--program", "./infra/stricter", "--project", "checkout"]);
    assert.equal(r.code, ExitCode.invalidVersionFile, r.stderr);
    assert.match(r.stderr, /config\.apiKey: not a setting of program \.\/infra\/stricter/);
    assert.match(r.stderr, /config\.region: required by program \.\/infra\/stricter/);
    assert.match(r.stderr, /config\.replicas: Too big/);
    assert.deepEqual(stackFiles(), []);
    assert.equal(project.stateDigest(), before);
  });

  it("adopts: stack.yaml and v1.yaml from the deployed config, the secret as the team's ciphertext, the backend untouched", async () => {
    const before = project.stateDigest();
    const started = Date.now();
    const r = await cli(["adopt", "--stack", "prod", "--as", "v1", "--program", "./infra/checkout", "--project", "checkout", "--json"]);
    adoptMs = Date.now() - started;
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const result = json(r);
    assert.deepEqual(result.keys, [
      { key: "apiKey", secret: true },
      { key: "greeting", secret: false },
      { key: "replicas", secret: false },
    ]);
    assert.equal(project.stateDigest(), before, "adopt only reads the backend");
    const teamSettings = fs.readFileSync(path.join(teamDir, "Pulumi.prod.yaml"), "utf8");
    const stackYaml = fs.readFileSync(path.join(project.dir, "stacks", "prod", "stack.yaml"), "utf8");
    const v1 = fs.readFileSync(path.join(project.dir, "stacks", "prod", "v1.yaml"), "utf8");
    const salt = /encryptionsalt: (\S+)/.exec(teamSettings)![1];
    const ciphertext = /secure: (\S+)/.exec(teamSettings)![1];
    assert.match(stackYaml, /^program: \.\/infra\/checkout$/m);
    assert.match(stackYaml, /^project: checkout$/m);
    assert.ok(stackYaml.includes(`encryptionsalt: ${salt}`), stackYaml);
    assert.ok(v1.includes(`secure: ${ciphertext}`), v1);
    assert.match(v1, /^ {2}greeting: hello again from the team$/m);
    assert.match(v1, /^ {2}replicas: 2$/m, "a number Pulumi kept as a string is written as one");
    const unknown = await cli(["adopt", "--stack", "staging", "--as", "v1", "--program", "./infra/checkout", "--project", "checkout"]);
    assert.equal(unknown.code, ExitCode.unknownStack, unknown.stderr);
    assert.ok(!fs.existsSync(path.join(project.dir, "stacks", "staging")));
    const again = await cli(["adopt", "--stack", "prod", "--as", "v1", "--program", "./infra/checkout", "--project", "checkout"]);
    assert.equal(again.code, ExitCode.usage, again.stderr);
    assert.match(again.stderr, /already defined/);
  });

  it("then the preview of v1 shows no resource change, and deploying it changes none", async () => {
    const before = project.stateDigest();
    const plan = json(await cli(["preview", "--stack", "prod", "--version", "v1", "--json"]));
    assert.deepEqual(plan.resourceChanges, []);
    assert.equal(project.stateDigest(), before);
    const r = await cli(["deploy", "--stack", "prod", "--version", "v1", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const result = json(r);
    assert.deepEqual(Object.keys(result.changeSummary ?? {}).filter((op) => op !== "same"), [], JSON.stringify(result.changeSummary));
    assert.equal(result.outputs.greeting.value, "hello again from the team");
    assert.equal(result.outputs.apiKeyLength.value, "[secret]");
  });

  it("deploys v2 and rolls back to v1; history starts at the adoption, after the team's own updates", async () => {
    const v1 = fs.readFileSync(path.join(project.dir, "stacks", "prod", "v1.yaml"), "utf8");
    project.writeVersion("v2", v1.replace("version: v1", "version: v2").replace("hello again from the team", "hello from stackpin's v2"));
    const v2 = await cli(["deploy", "--stack", "prod", "--version", "v2", "--yes", "--json"]);
    assert.equal(v2.code, ExitCode.ok, v2.stderr);
    assert.equal(json(v2).outputs.noteText.value, "hello from stackpin's v2");
    const back = await cli(["rollback", "--stack", "prod", "--to", "previous", "--yes", "--json"]);
    assert.equal(back.code, ExitCode.ok, back.stderr);
    assert.equal(json(back).to, "v1");
    const status = json(await cli(["status", "--stack", "prod", "--json"]));
    assert.equal(status.liveVersion, "v1");
    assert.equal(status.outputs.noteText.value, "hello again from the team");
    const history = json(await cli(["history", "--stack", "prod", "--json"])) as { op: string; from?: string; to?: string; result: string }[];
    assert.deepEqual(
      history.map((h) => `${h.op} ${h.from ?? "-"} -> ${h.to ?? "-"} ${h.result}`),
      ["rollback v2 -> v1 succeeded", "deploy v1 -> v2 succeeded", "deploy - -> v1 succeeded", "update - -> - succeeded", "update - -> - succeeded", "update - -> - succeeded"],
    );
  });
});
