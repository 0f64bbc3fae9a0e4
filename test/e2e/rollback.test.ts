import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { ExitCode } from "../../lib/errors";
import { json, pulumiOrSkip, TempProject, tempProject } from "./harness";

describe("deploy, preview and rollback on the real engine (file:// backend)", function () {
  let project: TempProject;
  let v1Outputs: Record<string, { value: unknown }>;

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
  });
  after(async () => project?.teardown());

  it("deploys v1 and reports it live", async () => {
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const result = json(r);
    assert.equal(result.to, "v1");
    assert.equal(result.outputs.message.value, "hello from v1");
    assert.equal(result.outputs.tokenSha256.value, "[secret]");
    v1Outputs = result.outputs;
    const settings = JSON.parse(fs.readFileSync(result.outputs.settingsPath.value, "utf8"));
    assert.equal(settings.message, "hello from v1");
  });

  it("deploys v2 over it, moving its files (a replacement)", async () => {
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "2", "--yes", "--json", "-m", "ship v2"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const result = json(r);
    assert.equal(result.from, "v1");
    assert.equal(result.outputs.message.value, "hello from v2");
    assert.ok(fs.existsSync(result.outputs.settingsPath.value));
    assert.ok(!fs.existsSync(v1Outputs.settingsPath.value as string), "v1's file moved away with the replacement");
  });

  it("previews the rollback to v1 with the config and resource diff, and changes nothing", async () => {
    const before = project.stateDigest();
    const r = await project.cli(["preview", "--stack", "dev", "--to", "v1", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const plan = json(r);
    assert.equal(plan.op, "rollback");
    assert.equal(plan.from, "v2");
    assert.equal(plan.to, "v1");
    const byKey = Object.fromEntries(plan.configChanges.map((c: any) => [c.key, c]));
    assert.deepEqual(byKey.message, { key: "message", kind: "changed", secret: false, before: "hello from v2", after: "hello from v1" });
    assert.equal(byKey.banner.kind, "added");
    assert.equal(byKey.region.kind, "removed");
    assert.equal(byKey["features.beta"].kind, "removed");
    assert.deepEqual(byKey.apiToken, { key: "apiToken", kind: "changed", secret: true, before: "[secret]", after: "[secret]" });
    const ops = Object.fromEntries(plan.resourceChanges.map((s: any) => [s.name, s]));
    assert.equal(ops["app-settings"].op, "replace");
    assert.deepEqual(ops["app-settings"].replaceKeys, ["path"]);
    assert.equal(ops["api-token"].op, "replace");
    assert.ok(plan.warnings.some((w: string) => /app-settings will be replaced \(path changed\)/.test(w)));
    assert.equal(project.stateDigest(), before, "preview must not touch the backend");

    const status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.equal(status.liveVersion, "v2");
    assert.equal(status.outputs.message.value, "hello from v2");
  });

  it("shows the same preview for people, with the secret masked", async () => {
    const r = await project.cli(["preview", "--stack", "dev", "--to", "v1"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.match(r.stdout, /rollback v2 -> v1 on stack dev/);
    assert.match(r.stdout, /apiToken\s*│ \[secret\]\s*│ \[secret\]/);
    assert.match(r.stdout, /replace\s+app-settings/);
  });

  it("rolls back to v1: outputs equal v1's again and history gains a new entry", async () => {
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "v1", "--yes", "--json", "--reason", "v2 broke checkout"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const result = json(r);
    assert.equal(result.op, "rollback");
    assert.deepEqual(result.outputs, v1Outputs);
    assert.equal(JSON.parse(fs.readFileSync(result.outputs.settingsPath.value, "utf8")).message, "hello from v1");

    const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.deepEqual(
      history.map((h: any) => [h.revision, h.op, h.from ?? null, h.to, h.result, h.who]),
      [
        [3, "rollback", "v2", "v1", "succeeded", "e2e"],
        [2, "deploy", "v1", "v2", "succeeded", "e2e"],
        [1, "deploy", null, "v1", "succeeded", "e2e"],
      ],
    );
    assert.equal(history[0].reason, "v2 broke checkout");
    const status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.equal(status.liveVersion, "v1");
    assert.equal(status.tags["stackpin:version"], "v1");
  });

  it("refuses --to previous when the only earlier version is the one just rolled back from", async () => {
    const before = project.stateDigest();
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "previous", "--yes"]);
    assert.equal(r.code, ExitCode.unknownVersion, r.stderr);
    assert.match(r.stderr, /no version before v1 to go back to/);
    assert.equal(project.stateDigest(), before);
  });

  it("goes to the version before the live one with --to previous", async () => {
    project.writeVersion("v3", "version: v3\ndescription: third\nconfig:\n  message: hello from v3\n");
    assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", "v3", "--yes"])).code, ExitCode.ok);
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "previous", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.equal(json(r).to, "v1");
    assert.equal(json(r).from, "v3");
  });

  it("keeps secrets out of every output, the history and the backend's files", async () => {
    const runs = await Promise.all([
      project.cli(["history", "--stack", "dev", "--json"]),
      project.cli(["status", "--stack", "dev", "--json"]),
      project.cli(["status", "--stack", "dev"]),
      project.cli(["preview", "--stack", "dev", "--version", "v2", "--json"]),
    ]);
    const token = fs.readFileSync(json(runs[1]).outputs.tokenPath.value, "utf8");
    assert.match(token, /^token-v1-/);
    for (const r of runs) {
      assert.equal(r.code, ExitCode.ok, r.stderr);
      assert.ok(!r.stdout.includes(token) && !r.stderr.includes(token), "token printed");
    }
    const files: string[] = [];
    const walk = (d: string) =>
      fs.readdirSync(d, { withFileTypes: true }).forEach((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : files.push(path.join(d, e.name))));
    walk(project.stateDir);
    for (const f of files) assert.ok(!fs.readFileSync(f, "utf8").includes(token), `token in plain text in ${f}`);
  });
});
