import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import { fakePrometheus } from "./fake-prometheus";
import { json, pulumiOrSkip, TempProject, tempProject } from "./harness";
import { makeSigners } from "./ssh-signers";
import { webhookReceiver } from "./webhook-receiver";

describe("operations around a rollback: watch, triggers, webhooks, incident record, audit, freeze, approvals", function () {
  let project: TempProject;
  let prom: Awaited<ReturnType<typeof fakePrometheus>>;
  let hook: Awaited<ReturnType<typeof webhookReceiver>>;
  const signals: Record<string, number> = { "job:errors:ratio": 0.002, "job:latency:p99": 0.1 };
  let stackFile: string;
  let rollbackDoc: any;

  const setPolicy = (policy: unknown) => {
    const doc = parse(fs.readFileSync(stackFile, "utf8"));
    fs.writeFileSync(stackFile, stringify({ ...doc, policy }));
  };
  const basePolicy = () => ({
    triggers: {
      intervalMs: 200,
      prometheus: prom.url,
      rules: [
        { name: "error rate above 5%", query: "job:errors:ratio", above: 0.05 },
        { name: "p99 over 2x baseline", query: "job:latency:p99", aboveBaseline: 2 },
        { name: "3 failed health checks", healthFailures: 3 },
      ],
    },
    // The second webhook goes nowhere: it must not block or fail the rollback.
    notify: { webhooks: [hook.url, "http://127.0.0.1:9/unreachable"], timeoutMs: 1000 },
  });

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    prom = await fakePrometheus(signals);
    hook = await webhookReceiver();
    stackFile = path.join(project.dir, "stacks", "dev", "stack.yaml");
    setPolicy(basePolicy());
    for (const v of ["v1", "v2"]) assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", v, "--yes"])).code, ExitCode.ok);
  });
  after(async () => {
    await prom?.close();
    hook?.close();
    await project?.teardown();
  });

  it("records a latency baseline in the backend", async () => {
    const r = await project.cli(["watch", "--stack", "dev", "--record-baseline", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.deepEqual(json(r).baselines, { "p99 over 2x baseline": 0.1 });
    assert.equal(json(await project.cli(["status", "--stack", "dev", "--json"])).baselines["p99-over-2x-baseline"], 0.1);
  });

  it("watch prints each evaluation, and rolls back to the last verified version when the error rate breaches", async () => {
    const watcher = project.start(["watch", "--stack", "dev", "--auto-rollback", "--json"]);
    // The incident starts only once watch has printed a healthy evaluation, however slow the machine.
    await watcher.waitFor(/ok error rate above 5%: 0.002 <= 0.05/);
    signals["job:errors:ratio"] = 0.09;
    const r = await watcher.done;
    signals["job:errors:ratio"] = 0.002;
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.match(r.stderr, /ok error rate above 5%: 0.002 <= 0.05 \| ok p99 over 2x baseline: 0.1 <= 2x baseline 0.1 \| ok 3 failed health checks: healthy/);
    assert.match(r.stderr, /FIRED error rate above 5%: 0.09 > 0.05/);
    const result = json(r);
    rollbackDoc = result.rollback;
    assert.deepEqual([rollbackDoc.from, rollbackDoc.to], ["v2", "v1"]);
    assert.ok(result.breachToRollbackMs >= 0 && result.breachToRollbackMs < 5000, `breach to rollback: ${result.breachToRollbackMs} ms`);
    process.stderr.write(`      [figures] breach to rollback start: ${result.breachToRollbackMs} ms (interval 200 ms)\n`);
    const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.equal(history[0].op, "rollback");
    assert.match(history[0].reason, /^trigger: error rate above 5%: 0.09 > 0.05/);
  });

  it("told the webhook when the rollback started and completed, and reported the broken one without failing", () => {
    const events = hook.received.map((b) => b.stackpin);
    assert.deepEqual(events.map((e) => e.event), ["rollback.started", "rollback.completed"]);
    const done = events[1];
    assert.deepEqual([done.stack, done.from, done.to, done.result], ["dev", "v2", "v1", "succeeded"]);
    assert.match(done.trigger, /^error rate above 5%: 0.09 > 0.05/);
    assert.match(done.reason, /^trigger: error rate above 5%/);
    assert.match(hook.received[0].text, /^ROLLBACK IN PROGRESS: dev v2 -> v1/);
    const broken = rollbackDoc.notifications.filter((n: any) => !n.ok);
    assert.deepEqual(broken.map((n: any) => n.event), ["rollback.started", "rollback.completed"]);
  });

  it("wrote an incident record as JSON and as the start of a post-mortem", () => {
    const record = JSON.parse(fs.readFileSync(rollbackDoc.incident.json, "utf8"));
    assert.deepEqual([record.stack, record.from, record.to, record.result], ["dev", "v2", "v1", "succeeded"]);
    assert.equal(record.trigger.rule, "error rate above 5%");
    const steps = record.timeline.map((t: any) => t.step);
    for (const step of ["threshold breached", "trigger fired", "rollback requested", "target resolved", "apply started", "apply finished", "verification passed"]) {
      assert.ok(steps.includes(step), `timeline lacks "${step}": ${steps.join(", ")}`);
    }
    assert.ok(record.diff.config.some((c: any) => c.key === "message" && c.kind === "changed"));
    assert.equal(record.verification.passed, true);
    const md = fs.readFileSync(rollbackDoc.incident.markdown, "utf8");
    assert.match(md, /^# Incident: rollback of dev from v2 to v1/);
    assert.match(md, /\| Trigger \| error rate above 5%: 0\.09 > 0\.05/);
    assert.match(md, /## Timeline \(UTC\)/);
    assert.match(md, /## Root cause/);
  });

  it("keeps an audit trail that verifies, and detects an edited or removed entry", async () => {
    let r = await project.cli(["audit", "verify", "--stack", "dev", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const { file, entries } = json(r);
    assert.ok(entries >= 3, `only ${entries} entries`);
    const original = fs.readFileSync(file, "utf8");
    const lines = original.trim().split("\n");
    try {
      fs.writeFileSync(file, original.replace('"to":"v1"', '"to":"v9"'));
      r = await project.cli(["audit", "verify", "--stack", "dev"]);
      assert.equal(r.code, ExitCode.auditBroken);
      assert.match(r.stderr, /was edited: its hash does not match its content/);

      fs.writeFileSync(file, [lines[0], ...lines.slice(2)].join("\n") + "\n");
      r = await project.cli(["audit", "verify", "--stack", "dev"]);
      assert.equal(r.code, ExitCode.auditBroken);
      assert.match(r.stderr, /an entry was removed or reordered/);

      fs.writeFileSync(file, lines.slice(0, -1).join("\n") + "\n");
      r = await project.cli(["audit", "verify", "--stack", "dev"]);
      assert.equal(r.code, ExitCode.auditBroken);
      assert.match(r.stderr, /entries were removed from the end/);
    } finally {
      fs.writeFileSync(file, original);
    }
    assert.equal((await project.cli(["audit", "verify", "--stack", "dev"])).code, ExitCode.ok);
  });

  it("a freeze blocks deploys and destroys (exit 14, nothing changed) but not rollbacks, and every machine sees it in status", async () => {
    assert.equal((await project.cli(["freeze", "--stack", "dev", "--reason", "incident 42: checkout errors"])).code, ExitCode.ok);
    const status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.equal(status.freeze.reason, "incident 42: checkout errors");
    assert.match((await project.cli(["status", "--stack", "dev"])).stdout, /DEPLOYS FROZEN .* incident 42: checkout errors \(rollbacks allowed\)/);

    const digest = project.stateDigest();
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v2", "--yes"]);
    assert.equal(r.code, ExitCode.frozen, r.stderr);
    assert.match(r.stderr, /deploys to stack dev are frozen since .* by e2e: incident 42: checkout errors/);
    assert.equal(project.stateDigest(), digest);
    const destroyed = await project.cli(["destroy", "--stack", "dev", "--yes", "--approve-data-loss"]);
    assert.equal(destroyed.code, ExitCode.frozen, destroyed.stderr);
    assert.match(destroyed.stderr, /destroys of stack dev are frozen since .* by e2e: incident 42: checkout errors/);
    assert.equal(project.stateDigest(), digest);

    assert.equal((await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes"])).code, ExitCode.ok, "a rollback is allowed while frozen");
    assert.equal((await project.cli(["unfreeze", "--stack", "dev", "--reason", "incident 42 resolved"])).code, ExitCode.ok);
    assert.equal(json(await project.cli(["status", "--stack", "dev", "--json"])).freeze, undefined);
  });

  it("a rollback the policy requires approval for is refused without a signed approval (exit 12, nothing changed), and runs with one", async () => {
    const signers = makeSigners(["alice"]);
    try {
      // A policy naming no approvers and no allowed signers takes an unsigned acknowledgement.
      setPolicy({ ...basePolicy(), approvals: { require: ["rollback"] } });
      let r = await project.cli(["rollback", "--stack", "dev", "--to", "v1", "--yes", "--approve", "carol", "--json"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
      assert.deepEqual(json(r).approvals, ["carol (--approve, unsigned: rollback)"]);

      fs.mkdirSync(path.join(project.dir, "stacks", "dev", "approvers"), { recursive: true });
      fs.writeFileSync(path.join(project.dir, "stacks", "dev", "approvers", "allowed_signers"), signers.allowedSigners(["alice"]));
      setPolicy({ ...basePolicy(), approvals: { require: ["rollback"], approvers: ["alice"], allowedSigners: "approvers/allowed_signers" } });
      const digest = project.stateDigest();
      r = await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes"]);
      assert.equal(r.code, ExitCode.approvalRequired, r.stderr);
      assert.match(r.stderr, /needs explicit approval: re-run with --approval-file FILE, an approval signed by one of alice \(`stackpin approve --stack dev --op rollback --to v2 --key KEY`\)/);
      r = await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes", "--approve", "alice"]);
      assert.equal(r.code, ExitCode.approvalRequired);
      assert.match(r.stderr, /--approve alice proves nothing/);
      assert.equal(project.stateDigest(), digest, "a refused rollback changed the backend");

      const approval = path.join(project.dir, "approval-ok.yaml");
      r = await project.cli(["approve", "--stack", "dev", "--op", "rollback", "--to", "v2", "--key", signers.key("alice"), "--reason", "incident 42", "--out", approval, "--yes"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
      r = await project.cli(["rollback", "--stack", "dev", "--to", "v2", "--yes", "--approval-file", approval, "--json"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
      assert.match(json(r).approvals[0], /^alice \(signed approval [0-9a-f-]{36}, approval-ok\.yaml, until .*\)$/);
      const record = JSON.parse(fs.readFileSync(json(r).incident.json, "utf8"));
      assert.equal(record.approvals.length, 1);
    } finally {
      signers.remove();
      setPolicy(basePolicy());
    }
  });
});
