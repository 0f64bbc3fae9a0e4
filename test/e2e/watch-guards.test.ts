import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import { recordsFile } from "../../lib/records/ledger";
import { fakePrometheus } from "./fake-prometheus";
import { CliRun, json, pulumiOrSkip, StartedCli, TempProject, tempProject } from "./harness";

/** A local webhook receiver that keeps the `stackpin` object of every body it gets. */
async function webhookReceiver() {
  const events: any[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      events.push(JSON.parse(body).stackpin);
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, events, close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))) };
}

/** Resolves once `condition` holds, checking every 50 ms; rejects if `ended` settles first. */
async function until(condition: () => boolean, ended: Promise<unknown>, what: string): Promise<void> {
  let over = false;
  void ended.then(() => (over = true), () => (over = true));
  while (!condition()) {
    if (over) throw new Error(`the operation ended before ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("watch --auto-rollback guards: it waits for a busy stack, and pages instead of rolling back a failed rollback, a stale change, or past its limit", function () {
  let project: TempProject;
  let prom: Awaited<ReturnType<typeof fakePrometheus>>;
  let hook: Awaited<ReturnType<typeof webhookReceiver>>;
  const signals: Record<string, number> = { "job:errors:ratio": 0.002 };
  let stackFile: string;
  const running: StartedCli[] = [];
  const gates: string[] = [];

  const setGuards = (autoRollback: Record<string, number>) => {
    const doc = parse(fs.readFileSync(stackFile, "utf8"));
    fs.writeFileSync(
      stackFile,
      stringify({
        ...doc,
        policy: {
          triggers: { intervalMs: 200, prometheus: prom.url, autoRollback, rules: [{ name: "error rate above 5%", query: "job:errors:ratio", above: 0.05 }] },
          notify: { webhooks: [hook.url], timeoutMs: 2000 },
        },
      }),
    );
  };
  const deploy = async (version: string) => {
    const r = await project.cli(["deploy", "--stack", "dev", "--version", version, "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
  };
  const history = async () => json(await project.cli(["history", "--stack", "dev", "--json"]));
  const incident = async (id: string) => {
    const r = await project.cli(["incident", "show", "--stack", "dev", "--id", id]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    return r.stdout;
  };
  /** A watch whose trigger fires at once and whose rollback a guard withholds: exit 15, and what it says. */
  const withheld = async (guard: string): Promise<{ r: CliRun; error: any; record: any }> => {
    const r = await project.cli(["watch", "--stack", "dev", "--auto-rollback", "--json"]);
    assert.equal(r.code, ExitCode.triggerFired, r.stderr);
    const error = json(r).error;
    assert.equal(error.code, "trigger-fired");
    assert.equal(error.details.withheld.guard, guard, error.message);
    const file = path.join(project.dir, ".stackpin", "incidents", "dev", `${error.details.incident}.json`);
    const record = JSON.parse(fs.readFileSync(file, "utf8"));
    assert.deepEqual(record.withheld, error.details.withheld);
    assert.deepEqual(record.timeline.map((t: any) => t.step), ["threshold breached", "trigger fired", "automatic rollback withheld"]);
    return { r, error, record };
  };

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    prom = await fakePrometheus(signals);
    hook = await webhookReceiver();
    stackFile = path.join(project.dir, "stacks", "dev", "stack.yaml");
    setGuards({});
    for (const v of ["v1", "v2"]) await deploy(v);
  });
  afterEach(async () => {
    signals["job:errors:ratio"] = 0.002;
    hook.events.length = 0;
    // A test that failed midway lets its held deploy go, and stops its watch.
    for (const g of gates.splice(0)) fs.writeFileSync(g, "");
    for (const c of running.splice(0)) {
      try {
        process.kill(-c.pid, "SIGTERM");
      } catch {
        // it ended already
      }
      await c.done;
    }
  });
  after(async () => {
    await prom?.close();
    await hook?.close();
    await project?.teardown();
  });

  it("pages instead of rolling back a change older than maxChangeAgeMs, and says why in the incident and the webhook", async () => {
    setGuards({ maxChangeAgeMs: 1 });
    signals["job:errors:ratio"] = 0.09;
    const before = await history();
    const { r, error, record } = await withheld("stale-change");
    assert.match(error.message, /^trigger "error rate above 5%" fired on stack dev: 0\.09 > 0\.05\. The automatic rollback to v1 was not run: the newest change, deploy v1 -> v2 \(revision 2\), ended \d+ (ms|s|min) ago, more than policy\.triggers\.autoRollback\.maxChangeAgeMs \(1 ms\)/);
    assert.match(error.message, /stackpin rollback --stack dev --to v1/);
    assert.match(r.stderr, /automatic rollback withheld: the newest change/);
    assert.deepEqual([record.from, record.to, record.result.slice(0, 9)], ["v2", "v1", "withheld:"]);
    assert.deepEqual(hook.events.map((e) => e.event), ["rollback.withheld"]);
    assert.match(hook.events[0].detail, /older|more than policy\.triggers\.autoRollback\.maxChangeAgeMs/);
    assert.deepEqual(await history(), before, "nothing was applied");
    const md = await incident(error.details.incident);
    assert.match(md, /^# Incident: trigger "error rate above 5%" on dev at v2, no automatic rollback/);
    assert.match(md, /\| Rolled back \| no: the newest change, deploy v1 -> v2 \(revision 2\), ended/);
    assert.match(md, /automatic rollback withheld — the newest change/);
  });

  it("waits while a deploy holds the stack, saying so, and rolls back once the stack is free and the trigger still holds", async () => {
    setGuards({});
    // v10 stops inside its update at a gate the test opens, and then fails: its data directory's name is taken by a file.
    const gate = path.join(project.dir, "gate-v10");
    const blocker = path.join(project.dir, ".stackpin", "local", "dev", "blocked");
    const v2 = parse(fs.readFileSync(path.join(project.dir, "stacks", "dev", "v2.yaml"), "utf8"));
    project.writeVersion("v10", stringify({ ...v2, version: "v10", config: { ...v2.config, message: "hello from v10", dataDir: "blocked", rolloutHoldFile: gate } }));
    fs.writeFileSync(blocker, "");
    try {
      const watcher = project.start(["watch", "--stack", "dev", "--auto-rollback", "--json"], { detached: true });
      running.push(watcher);
      await watcher.waitFor(/ok error rate above 5%: 0\.002 <= 0\.05/);
      const deploying = project.start(["deploy", "--stack", "dev", "--version", "v10", "--yes"]);
      gates.push(gate);
      // The deploy's update runs under its in-flight mark, and waits at the gate.
      const records = recordsFile(project.stateDir, "stackpin-demo", "dev");
      await until(() => fs.existsSync(records) && JSON.parse(fs.readFileSync(records, "utf8")).inFlight?.kind === "update", deploying.done, "the deploy's update started");
      signals["job:errors:ratio"] = 0.09;
      await watcher.waitFor(/automatic rollback v2 -> v1 deferred: another operation holds the stack: stackpin deploy v2 -> v10 by e2e \(pid \d+ on \S+ is running/);
      fs.writeFileSync(gate, "");
      const deployed = await deploying.done;
      assert.equal(deployed.code, ExitCode.applyFailed, deployed.stderr);
      const r = await watcher.done;
      assert.equal(r.code, ExitCode.ok, r.stderr);
      assert.doesNotMatch(r.stderr, /another operation is running/);
      const result = json(r);
      // From what the failed deploy left: the stack may be partly at v10.
      assert.deepEqual([result.rollback.from, result.rollback.to], ["v10", "v1"]);
      assert.match(r.stderr, /trigger "error rate above 5%" fired \(0\.09 > 0\.05\); rolling back v10 -> v1/);
      const h = await history();
      assert.deepEqual([h[0].op, h[0].from, h[0].to, h[0].result], ["rollback", "v10", "v1", "succeeded"]);
      assert.deepEqual([h[1].op, h[1].to, h[1].result], ["deploy", "v10", "failed"]);
      // One incident: the wait, then the rollback, in order; the interim record was folded into it.
      const record = JSON.parse(fs.readFileSync(result.rollback.incident.json, "utf8"));
      const steps = record.timeline.map((t: any) => t.step);
      assert.ok(steps.indexOf("automatic rollback deferred") >= 0 && steps.indexOf("automatic rollback deferred") < steps.indexOf("rollback requested"), steps.join(", "));
      assert.ok(steps.includes("stack changed"), steps.join(", "));
      assert.match(record.timeline.find((t: any) => t.step === "automatic rollback deferred").detail, /stackpin deploy v2 -> v10 by e2e/);
      const open = fs.readdirSync(path.dirname(result.rollback.incident.json)).filter((f) => f.endsWith(".json")).map((f) => JSON.parse(fs.readFileSync(path.join(path.dirname(result.rollback.incident.json), f), "utf8")));
      assert.deepEqual(open.filter((x) => String(x.result).startsWith("deferred")), [], "an interim record was left behind");
      assert.deepEqual(hook.events.map((e) => e.event), ["rollback.deferred", "rollback.started", "rollback.completed"]);
      assert.match(hook.events[0].detail, /another operation holds the stack: stackpin deploy v2 -> v10/);
    } finally {
      fs.rmSync(blocker, { force: true });
    }
  });

  it("counts its rollbacks from history: past maxRollbacks in the window it pages; below, it acts; on a version it put live, it pages", async () => {
    setGuards({ maxRollbacks: 1 });
    await deploy("v2");
    signals["job:errors:ratio"] = 0.09;
    // A new watch process: the rollback counted is the one an earlier watch made, read from history.
    const limited = await withheld("rollback-limit");
    assert.match(limited.error.message, /1 automatic rollback\(s\) in the last 60 min \(revision \d+\), the most policy\.triggers\.autoRollback allows \(maxRollbacks 1 per windowMs 60 min\)/);
    setGuards({ maxRollbacks: 2 });
    const r = await project.cli(["watch", "--stack", "dev", "--auto-rollback", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.deepEqual([json(r).rollback.from, json(r).rollback.to], ["v2", "v1"]);
    // v1 is live through that automatic rollback, and the trigger still fires: not the release's fault.
    setGuards({ maxRollbacks: 10 });
    const again = await withheld("automatic-rollback-live");
    assert.match(again.error.message, /v1 was put live by an automatic rollback, rollback v2 -> v1 \(revision \d+\) \("trigger: error rate above 5%: 0\.09 > 0\.05"\), and the trigger fires on it too/);
    assert.deepEqual(hook.events.map((e) => e.event), ["rollback.withheld", "rollback.started", "rollback.completed", "rollback.withheld"]);
  });

  it("never rolls back a failed rollback: the next trigger pages, and the incident says why", async () => {
    setGuards({ maxRollbacks: 10 });
    // v11 verifies while its gate file is absent: the rollback to it fails its verification once it exists.
    const gate = path.join(project.dir, "gate-v11");
    const v1 = parse(fs.readFileSync(path.join(project.dir, "stacks", "dev", "v1.yaml"), "utf8"));
    project.writeVersion("v11", stringify({ ...v1, version: "v11", verify: { ...v1.verify, smoke: [{ name: "no gate", run: `test ! -e ${gate}` }] } }));
    await deploy("v11");
    await deploy("v2");
    signals["job:errors:ratio"] = 0.09;
    fs.writeFileSync(gate, "");
    try {
      const failed = await project.cli(["watch", "--stack", "dev", "--auto-rollback", "--json"]);
      assert.equal(failed.code, ExitCode.verificationFailed, failed.stderr);
      const h = await history();
      assert.deepEqual([h[0].op, h[0].from, h[0].to, h[0].result], ["rollback", "v2", "v11", "succeeded"]);
      assert.match(h[0].verification, /^failed/);
      const { error, record } = await withheld("failed-rollback");
      assert.match(error.message, /the newest update, rollback v2 -> v11 \(revision \d+\), is a rollback that failed \(its verification failed: .*\): a failed rollback is never rolled back automatically/);
      assert.match(record.withheld.reason, /is a rollback that failed/);
      assert.deepEqual(hook.events.map((e) => e.event), ["rollback.started", "rollback.failed", "rollback.withheld"]);
      assert.deepEqual((await history()).length, h.length, "nothing was applied after the failed rollback");
      assert.match(await incident(error.details.incident), /\| Rolled back \| no: the newest update, rollback v2 -> v11/);
    } finally {
      fs.rmSync(gate, { force: true });
    }
  });
});
