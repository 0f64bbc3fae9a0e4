import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import { ExitCode } from "../../lib/errors";
import { json, portFree, processesOf, pulumiOrSkip, TempProject, tempProject } from "./harness";

interface Health {
  status: string;
  version: string;
  secretGenerations: Record<string, number>;
}

async function health(url: string): Promise<{ code: number; body: Health }> {
  const res = await fetch(`${url}/health`);
  return { code: res.status, body: (await res.json()) as Health };
}

/** True while the process runs (a zombie waiting for a reaper does not count: it serves nothing). */
function alive(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] !== "Z";
  } catch {
    return false;
  }
}

/** A client polling through the traffic switch, counting every answer that was not a healthy 200. */
function poller(endpoint: string) {
  const seen: string[] = [];
  /** When each version first answered (epoch ms). */
  const firstAt: Record<string, number> = {};
  const failures: string[] = [];
  let requests = 0;
  let running = true;
  const answered: (() => void)[] = [];
  const done = (async () => {
    while (running) {
      requests += 1;
      try {
        const r = await health(endpoint);
        if (r.code !== 200) failures.push(`${r.code} ${JSON.stringify(r.body)}`);
        else if (seen[seen.length - 1] !== r.body.version) {
          seen.push(r.body.version);
          firstAt[r.body.version] ??= Date.now();
        }
      } catch (err) {
        failures.push(String((err as Error).cause ?? err));
      }
      answered.splice(0).forEach((f) => f());
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    seen,
    firstAt,
    failures,
    requests: () => requests,
    /** Resolves once the client has made `n` more requests (so it has seen what the switch serves now). */
    next: (n: number) => new Promise<void>((resolve) => {
      const target = requests + n;
      const tick = () => (requests >= target ? resolve() : answered.push(tick));
      tick();
    }),
    async stop() {
      running = false;
      await done;
    },
  };
}

describe("the local target: blue/green, verification, forward-only secrets (real processes, real HTTP)", function () {
  let project: TempProject;
  let endpoint: string;

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
  });
  after(async () => project?.teardown());

  it("deploys v1 on blue and v2 on green, keeping v1 running idle", async () => {
    const v1 = json(await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes", "--json"]));
    endpoint = v1.outputs.endpoint.value;
    assert.equal(v1.verification.passed, true);
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v2", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const v2 = json(r);
    assert.equal(v2.outputs.endpoint.value, endpoint, "the public endpoint stays put");
    assert.equal(v2.outputs.activeSlot.value, "green");
    assert.equal((await health(endpoint)).body.version, "v2");
    const blue = v2.outputs.slots.value.blue;
    assert.equal(blue.version, "v1");
    assert.equal((await health(`http://127.0.0.1:${blue.port}`)).body.version, "v1", "v1 still answers on the idle slot");
    assert.deepEqual(v2.verification.checks.map((c: any) => [c.name, c.passed]), [
      ["health and live version", true],
      ["smoke: home page answers", true],
    ]);
  });

  it("rolls back by switching traffic to blue first: a polling client sees only healthy answers, then v1, before the engine has recorded it", async () => {
    const before = json(await project.cli(["status", "--stack", "dev", "--json"])).outputs;
    const bluePid = before.slots.value.blue.pid;
    const greenPid = before.slots.value.green.pid;
    const client = poller(endpoint);
    const started = Date.now();
    const r = await project.cli(["rollback", "--stack", "dev", "--to", "v1", "--yes", "--json", "--reason", "v2 error rate"]);
    const ended = Date.now();
    const took = ended - started;
    await client.next(20);
    await client.stop();
    process.stderr.write(
      `      [figures] rollback by switch: ${took} ms, v1 answering after ${client.firstAt.v1 - started} ms; ${client.requests()} requests through the switch, ${client.failures.length} failed\n`,
    );
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.deepEqual(client.failures, [], "requests failed during the rollback");
    assert.deepEqual(client.seen, ["v2", "v1"], "the client saw v2, then only v1");
    const result = json(r);
    assert.equal(result.outputs.slots.value.blue.pid, bluePid, "v1 was not redeployed: the same process answers");
    assert.equal(result.outputs.slots.value.green, undefined, "green was drained");
    assert.ok(!alive(greenPid), "the green process stopped");
    assert.equal(result.verification.passed, true);
    // Traffic first: v1 answered while the engine was still recording the switch.
    assert.equal(result.traffic?.slot, "blue", JSON.stringify(result.traffic));
    assert.ok(client.firstAt.v1 < ended, "v1 answered before the rollback command ended");
    assert.ok(result.traffic.movedMs < result.recordedMs, "traffic moved before the state was recorded");
  });

  it("rotates a secret forward, and a rollback keeps the higher generation", async () => {
    const rotated = await project.cli(["rotate", "--stack", "dev", "--secret", "apiKey", "--json"]);
    assert.equal(rotated.code, ExitCode.ok, rotated.stderr);
    const rot = json(rotated);
    assert.deepEqual([rot.from, rot.version, rot.generation], ["v1", "v4", 2]);
    const before = json(await project.cli(["status", "--stack", "dev", "--json"])).outputs.secretFingerprints.value.apiKey;

    const d = await project.cli(["deploy", "--stack", "dev", "--version", "v4", "--yes", "--json"]);
    assert.equal(d.code, ExitCode.ok, d.stderr);
    const afterRotation = json(d).outputs.secretFingerprints.value.apiKey;
    assert.notEqual(afterRotation, before, "a new secret was generated");
    assert.equal((await health(endpoint)).body.secretGenerations.apiKey, 2);

    const p = await project.cli(["preview", "--stack", "dev", "--to", "v1", "--json"]);
    assert.equal(p.code, ExitCode.ok, p.stderr);
    assert.ok(
      json(p).warnings.includes("secret apiKey: v1 pins generation 1, but generation 2 is live; the current secret is kept (secrets never roll back)"),
      json(p).warnings.join("\n"),
    );
    const text = await project.cli(["preview", "--stack", "dev", "--to", "v1"]);
    assert.match(text.stdout, /the current secret is kept \(secrets never roll back\)/);

    const r = await project.cli(["rollback", "--stack", "dev", "--to", "v1", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const out = json(r).outputs;
    assert.deepEqual(out.secretGenerations.value, { apiKey: 2 });
    assert.equal(out.secretFingerprints.value.apiKey, afterRotation, "the rotated secret is still the one in use");
    const h = await health(endpoint);
    assert.equal(h.code, 200);
    assert.equal(h.body.version, "v1");
    assert.equal(h.body.secretGenerations.apiKey, 2);
  });

  it("a broken deploy with --auto-rollback ends on the last good version with exit 11", async () => {
    const client = poller(endpoint);
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v3", "--yes", "--auto-rollback", "--json"]);
    await client.stop();
    assert.equal(r.code, ExitCode.verificationFailed, r.stderr);
    const doc = json(r);
    assert.equal(doc.error.code, "verification-failed");
    assert.match(doc.error.message, /^v3 never became ready on stack dev \(inside the update: it never took traffic\): health gate: .*cache unreachable/);
    assert.match(doc.error.message, /rolled back automatically to v1/);
    assert.deepEqual(client.failures, [], "the broken release never took traffic");
    assert.deepEqual(client.seen, ["v1"]);

    const status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.equal(status.liveVersion, "v1");
    assert.equal(status.verifiedVersion, "v1");
    const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.deepEqual(
      history.slice(0, 2).map((h: any) => [h.op, h.from, h.to, h.result, h.verification?.split(":")[0]]),
      [
        ["rollback", "v3", "v1", "succeeded", "passed"],
        ["deploy", "v1", "v3", "failed", "failed"],
      ],
    );
    assert.match(history[0].reason, /^auto-rollback: v3 never became ready \(inside the update: it never took traffic\): health gate: /);
  });

  it("destroy leaves no process, port or file behind", async () => {
    const outputs = json(await project.cli(["status", "--stack", "dev", "--json"])).outputs;
    const ports = [Number(new URL(outputs.endpoint.value).port), ...Object.values<any>(outputs.slots.value).map((s) => s.port)];
    assert.ok(processesOf(project.dir).length >= 2, "the service and the switch run before destroy");
    const r = await project.cli(["destroy", "--stack", "dev", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.deepEqual(processesOf(project.dir), []);
    for (const port of ports) assert.ok(await portFree(port), `port ${port} still taken`);
    const status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.equal(status.liveVersion, undefined);
  });
});
