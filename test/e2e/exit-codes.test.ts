import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { ExitCode } from "../../lib/errors";
import { fakePrometheus } from "./fake-prometheus";
import { CliRun, filesUnder, json, pulumiOrSkip, TempProject, tempProject } from "./harness";
import { doubleEnv, startS3Double } from "../unit/s3-double";

/** The README's exit-code table: code -> meaning, parsed from the "### Exit codes" section. */
function readmeExitCodes(): Map<number, string> {
  const readme = fs.readFileSync(path.join(packageRoot(), "README.md"), "utf8");
  const start = readme.indexOf("### Exit codes");
  assert.ok(start >= 0, "README.md has no \"### Exit codes\" section");
  const section = readme.slice(start).split("\n").slice(1);
  const end = section.findIndex((l) => /^#{1,3} /.test(l));
  const rows = new Map<number, string>();
  for (const line of section.slice(0, end < 0 ? undefined : end)) {
    const m = /^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*$/.exec(line);
    if (m) rows.set(Number(m[1]), m[2]);
  }
  return rows;
}

describe("every exit code in the README's table is what the CLI exits with in that situation", function () {
  let project: TempProject;
  const documented = readmeExitCodes();
  /** code -> the scenario that produced it, filled as the tests run. */
  const produced = new Map<number, string>();
  let stackFile: string;

  /** Runs a scenario and records that it produced `code` (asserting it did). */
  async function expect(code: number, scenario: string, args: string[], options?: { env?: NodeJS.ProcessEnv }): Promise<CliRun> {
    const r = await project.cli(args, options);
    assert.equal(r.code, code, `${scenario}: expected exit ${code} (${documented.get(code)}), got ${r.code}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /internal error|\n\s+at .*\(.*\.js:\d+/, `${scenario}: no internal error or stack trace`);
    assert.doesNotMatch(r.stderr, /stackpin init/, `${scenario}: names a command that does not exist`);
    produced.set(code, scenario);
    return r;
  }
  const setPolicy = (policy: unknown) => {
    const doc = parse(fs.readFileSync(stackFile, "utf8"));
    fs.writeFileSync(stackFile, stringify(policy ? { ...doc, policy } : { ...doc, policy: undefined }));
  };

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    stackFile = path.join(project.dir, "stacks", "dev", "stack.yaml");
    await expect(ExitCode.ok, "deploy v1", ["deploy", "--stack", "dev", "--version", "v1", "--yes"]);
  });
  after(async function () {
    await project?.teardown();
    const rows = [...documented.keys()].sort((a, b) => a - b).map((c) => `${c}${produced.has(c) ? "" : " (not produced)"}`);
    process.stderr.write(`      [figures] exit codes: ${produced.size} of ${documented.size} documented codes produced through the CLI: ${rows.join(", ")}\n`);
  });

  it("the README documents every ExitCode value, and nothing else", () => {
    const values = Object.values(ExitCode).sort((a, b) => a - b);
    assert.deepEqual([...documented.keys()].sort((a, b) => a - b), values);
    assert.match(documented.get(ExitCode.internal)!, /internal error/);
  });

  it("2: a flag that is not a number (--interval abc) is a usage error, not an endless loop", async () => {
    const r = await expect(ExitCode.usage, "watch --interval abc", ["watch", "--stack", "dev", "--interval", "abc"]);
    assert.match(r.stderr, /--interval must be a whole number of milliseconds, at least 50, not "abc"/);
    await expect(ExitCode.usage, "missing --to", ["rollback", "--stack", "dev"]);
  });

  it("3: an unknown stack, pointing to what exists instead of a command that does not", async () => {
    const r = await expect(ExitCode.unknownStack, "unknown stack", ["status", "--stack", "nope"]);
    assert.match(r.stderr, /stack "nope" not found; known: dev\. To add it, create stacks\/nope\/stack\.yaml/);
  });

  it("4: an unknown version", async () => {
    await expect(ExitCode.unknownVersion, "unknown version", ["deploy", "--stack", "dev", "--version", "v41", "--yes"]);
  });

  it("5: a malformed version file", async () => {
    project.writeVersion("v7", "version: v7\nconfig:\n  message: [unclosed\n");
    await expect(ExitCode.invalidVersionFile, "malformed YAML", ["deploy", "--stack", "dev", "--version", "v7", "--yes"]);
    fs.rmSync(path.join(project.dir, "stacks", "dev", "v7.yaml"));
  });

  it("6: no passphrase, for a command that runs the engine (status and history only read, and need none)", async () => {
    await expect(ExitCode.missingPassphrase, "no passphrase", ["deploy", "--stack", "dev", "--version", "v2", "--yes"], { env: { PULUMI_CONFIG_PASSPHRASE: undefined } });
  });

  it("7: another operation holds the stack", async () => {
    const gate = path.join(project.dir, "gate-7");
    project.writeVersion("v9", `version: v9\nconfig:\n  message: held\n  rolloutHoldFile: ${gate}\n`);
    const first = project.start(["deploy", "--stack", "dev", "--version", "v9", "--yes"]);
    // The update's own step, after the apply line: the preview before it prints the same step while
    // nothing holds the stack yet.
    await first.waitFor(/▸ deploy [^\n]* on dev:[\s\S]*update app-settings/);
    try {
      await expect(ExitCode.concurrentOperation, "a held lock", ["rollback", "--stack", "dev", "--to", "v1", "--yes"]);
    } finally {
      fs.writeFileSync(gate, "");
    }
    assert.equal((await first.done).code, ExitCode.ok);
  });

  it("9: not confirmed (no terminal, no --yes)", async () => {
    await expect(ExitCode.notConfirmed, "no --yes", ["rollback", "--stack", "dev", "--to", "v1"]);
  });

  it("10: no usable Pulumi CLI", async () => {
    await expect(ExitCode.pulumiUnavailable, "no CLI", ["status", "--stack", "dev"], { env: { STACKPIN_PULUMI: path.join(project.dir, "no-such-pulumi") } });
  });

  it("12: an approval the policy requires is missing", async () => {
    setPolicy({ approvals: { require: ["rollback"] } });
    try {
      await expect(ExitCode.approvalRequired, "no approval", ["rollback", "--stack", "dev", "--to", "v1", "--yes"]);
    } finally {
      setPolicy(undefined);
    }
  });

  it("13: the database is unreachable when the preview checks it; a refused first deploy leaves no stack behind", async () => {
    const dbStack = path.join(project.dir, "stacks", "shop");
    fs.cpSync(path.join(packageRoot(), "test", "fixtures", "shop"), dbStack, { recursive: true });
    fs.appendFileSync(
      path.join(dbStack, "stack.yaml"),
      stringify({ config: { database: { url: "postgres://postgres@127.0.0.1:9/app", archiveDir: path.join(project.dir, "no-archive"), pgBin: "/usr/lib/postgresql/15/bin" } } }),
    );
    const stackYaml = fs.readFileSync(path.join(dbStack, "stack.yaml"));
    const before = project.stateDigest();
    const r = await expect(ExitCode.databaseUnavailable, "database unreachable", ["deploy", "--stack", "shop", "--version", "v1", "--yes"]);
    assert.match(r.stderr, /cannot connect to postgres:\/\/postgres@127\.0\.0\.1:9\/app.*Nothing was changed/);
    assert.equal(project.stateDigest(), before, "the refused first deploy changed the backend");
    assert.deepEqual(filesUnder(project.stateDir).filter((f) => f.includes("stackpin-shop")), [], "the stack was created in the backend");
    assert.ok(fs.readFileSync(path.join(dbStack, "stack.yaml")).equals(stackYaml), "stack.yaml was rewritten");
    fs.rmSync(dbStack, { recursive: true });
  });

  it("14: deploys are frozen", async () => {
    assert.equal((await project.cli(["freeze", "--stack", "dev", "--reason", "exit codes"])).code, ExitCode.ok);
    try {
      await expect(ExitCode.frozen, "frozen", ["deploy", "--stack", "dev", "--version", "v2", "--yes"]);
    } finally {
      assert.equal((await project.cli(["unfreeze", "--stack", "dev", "--reason", "exit codes"])).code, ExitCode.ok);
    }
  });

  it("15: watch without --auto-rollback, when a trigger fires", async () => {
    const prom = await fakePrometheus({ "job:errors:ratio": 0.09 });
    setPolicy({ triggers: { intervalMs: 100, prometheus: prom.url, rules: [{ name: "error rate above 5%", query: "job:errors:ratio", above: 0.05 }] } });
    try {
      const r = await expect(ExitCode.triggerFired, "trigger fired", ["watch", "--stack", "dev"]);
      assert.match(r.stderr, /trigger "error rate above 5%" fired on stack dev/);
    } finally {
      setPolicy(undefined);
      await prom.close();
    }
  });

  it("16: the audit trail was edited", async () => {
    const { file } = json(await project.cli(["audit", "verify", "--stack", "dev", "--json"]));
    const original = fs.readFileSync(file, "utf8");
    fs.writeFileSync(file, original.replace('"to":"v1"', '"to":"v8"'));
    try {
      await expect(ExitCode.auditBroken, "audit edited", ["audit", "verify", "--stack", "dev"]);
    } finally {
      fs.writeFileSync(file, original);
    }
  });

  it("8: the update ran and failed: says which revision, that the stack may be partly updated, and audits it", async () => {
    // The new data directory's name is taken by a file: the engine fails creating the settings in it.
    const blocker = path.join(project.dir, ".stackpin", "local", "dev", "blocked");
    fs.writeFileSync(blocker, "");
    const v1 = parse(fs.readFileSync(path.join(project.dir, "stacks", "dev", "v1.yaml"), "utf8"));
    project.writeVersion("v10", stringify({ ...v1, version: "v10", config: { ...v1.config, dataDir: "blocked" } }));
    try {
      const r = await expect(ExitCode.applyFailed, "update failed", ["deploy", "--stack", "dev", "--version", "v10", "--yes"]);
      const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
      assert.deepEqual([history[0].to, history[0].result], ["v10", "failed"]);
      assert.match(r.stderr, new RegExp(`failed during the update \\(revision ${history[0].revision}, recorded in history as failed\\); the stack may be partially updated\\. Run \`stackpin status --stack dev\``));
      assert.doesNotMatch(r.stderr, /nothing was changed/i);
      const trail = json(await project.cli(["audit", "show", "--stack", "dev", "--json"]));
      const last = trail.entries[trail.entries.length - 1];
      assert.deepEqual([last.op, last.to, last.result], ["deploy", "v10", "failed"]);
    } finally {
      fs.rmSync(blocker);
    }
  });

  it("11: a release failing its health gate, without --auto-rollback, is exit 11 and says traffic stayed where it was", async () => {
    const r = await expect(ExitCode.verificationFailed, "health gate failed", ["deploy", "--stack", "dev", "--version", "v3", "--yes", "--json"]);
    const error = json(r).error;
    assert.equal(error.code, "health-gate-failed");
    assert.match(error.message, /v3 failed its health gate on stack dev: traffic stayed on the previous release/);
    assert.match(error.message, /cache unreachable/);
  });

  it("11 too: a failed auto-rollback keeps both reasons, the deploy's and the rollback's", async () => {
    setPolicy({ approvals: { require: ["rollback"] } });
    try {
      const r = await expect(ExitCode.verificationFailed, "auto-rollback refused", ["deploy", "--stack", "dev", "--version", "v3", "--yes", "--auto-rollback", "--json"]);
      const error = json(r).error;
      // The health gate failed inside the update, before any traffic moved: not a verification after the apply.
      assert.match(error.message, /^v3 never became ready on stack dev \(inside the update: it never took traffic\): health gate: .*cache unreachable/);
      assert.match(error.message, /the automatic rollback to v\d+ failed too: it was refused before it changed anything: this rollback on stack dev needs explicit approval/);
      assert.equal(error.details.rollbackError.exitCode, ExitCode.approvalRequired);
    } finally {
      setPolicy(undefined);
    }
  });

  it("11 too: a rollback whose target fails verification says it was applied and is live, unverified", async () => {
    const v1 = parse(fs.readFileSync(path.join(project.dir, "stacks", "dev", "v1.yaml"), "utf8"));
    project.writeVersion("v12", stringify({ ...v1, version: "v12", verify: { ...v1.verify, smoke: [{ name: "always fails", run: "exit 3" }] } }));
    // A rollback re-applies what ran, so v12 must have run (applied, failing its smoke check) and been left.
    assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", "v12", "--yes"])).code, ExitCode.verificationFailed);
    assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"])).code, ExitCode.ok);
    const r = await expect(ExitCode.verificationFailed, "rollback unverified", ["rollback", "--stack", "dev", "--to", "v12", "--yes"]);
    assert.match(r.stderr, /v12 failed verification on stack dev: .*always fails/);
    assert.match(r.stderr, /the rollback to v12 was applied and is live, but unverified/);
    assert.doesNotMatch(r.stderr, /not rolled back/);
    assert.equal(json(await project.cli(["status", "--stack", "dev", "--json"])).liveVersion, "v12");
  });

  it("8 too: an engine failure in a preview is the engine's, not an internal error, and creates nothing", async () => {
    // A URL the schema's pattern lets through but the program cannot parse: the engine fails the preview.
    const dbStack = path.join(project.dir, "stacks", "shop");
    fs.cpSync(path.join(packageRoot(), "test", "fixtures", "shop"), dbStack, { recursive: true });
    fs.appendFileSync(path.join(dbStack, "stack.yaml"), stringify({ config: { database: { url: "postgres://[oops/app", archiveDir: "/nowhere", pgBin: "/nowhere" } } }));
    const stackYaml = fs.readFileSync(path.join(dbStack, "stack.yaml"));
    const before = project.stateDigest();
    try {
      const r = await project.cli(["preview", "--stack", "shop", "--version", "v1", "--json"]);
      assert.equal(r.code, ExitCode.applyFailed, r.stderr);
      assert.equal(json(r).error.code, "engine-failed");
      assert.match(json(r).error.message, /the Pulumi engine failed on stack shop in the preview \(nothing was applied\)/);
      assert.equal(project.stateDigest(), before);
      assert.ok(fs.readFileSync(path.join(dbStack, "stack.yaml")).equals(stackYaml), "stack.yaml was rewritten");
    } finally {
      fs.rmSync(dbStack, { recursive: true });
    }
  });

  it("17: a fleet rollback where not every stack succeeded (here: one cannot be previewed, so none is touched)", async () => {
    const before = project.stateDigest();
    const r = await expect(ExitCode.fleetIncomplete, "fleet incomplete", ["rollback", "--stacks", "d*", "--to", "v99", "--yes"]);
    assert.match(r.stderr, /1 of 1 stack\(s\) could not be previewed \(dev: .*v99.*\); no stack was rolled back\. Nothing was changed\./);
    assert.equal(project.stateDigest(), before);
  });

  it("18: an s3:// store that ignores conditional writes is refused before the engine runs, and nothing is written to it", async () => {
    const store = await startS3Double({ conditional: false });
    try {
      const r = await expect(ExitCode.backendUnsupported, "a store ignoring conditional writes", ["freeze", "--stack", "dev", "--reason", "incident 7"], {
        env: { ...doubleEnv, STACKPIN_BACKEND: store.backendUrl("team") },
      });
      assert.match(r.stderr, new RegExp(`s3://${store.bucket}/team at ${store.endpoint.replace(/\./g, "\\.")} ignores conditional writes \\(If-Match\\): stackpin cannot share records safely there`));
      assert.match(r.stderr, /Use a store that supports S3 conditional writes/);
      assert.deepEqual([...store.objects.keys()], [], "the refused store holds objects");
      // The engine never ran: Pulumi's own objects (.pulumi/) were not even read.
      assert.deepEqual(store.requests.filter((q) => !q.includes(".stackpin/cas-check-")), []);
    } finally {
      await store.stop();
    }
  });

  it("19: check, when a way back cannot be taken now (here: the passphrase no longer opens the stack's secrets)", async () => {
    const r = await expect(ExitCode.notReady, "way back not ready", ["check", "--stack", "dev", "--json"], { env: { PULUMI_CONFIG_PASSPHRASE: "not-the-passphrase" } });
    const report = json(r).error.details;
    assert.ok(report.targets.length > 0, "a way back was checked");
    for (const t of report.targets) assert.equal(t.legs.find((l: { leg: string }) => l.leg === "secrets").ok, false, JSON.stringify(t.legs));
  });

  it("every documented code but 1 (a bug in stackpin, which no scenario may produce) was produced above", () => {
    const missing = [...documented.keys()].filter((c) => c !== ExitCode.internal && !produced.has(c));
    assert.deepEqual(missing, [], `no scenario produced ${missing.join(", ")}`);
    assert.equal(produced.has(ExitCode.internal), false);
  });
});
