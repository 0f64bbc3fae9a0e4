import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { ExitCode } from "../../lib/errors";
import { json, processesOf, prng, pulumiOrSkip, TempProject, tempProject } from "./harness";

const cliEntry = path.join(packageRoot(), "dist", "lib", "cli", "main.js");

/** Where in the operation a trial kills the CLI's process group: each is an observable event. */
type KillPoint =
  | { kind: "stderr-line"; n: number }
  | { kind: "lock-then-delay"; ms: number }
  | { kind: "delay"; ms: number };

function describeKill(k: KillPoint): string {
  return k.kind === "stderr-line" ? `after stderr line ${k.n}` : k.kind === "lock-then-delay" ? `${k.ms} ms after the lock appeared` : `${k.ms} ms after the start`;
}

function lockFiles(project: TempProject): string[] {
  const dir = path.join(project.stateDir, ".pulumi", "locks");
  return fs.existsSync(dir) ? (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith(".json")) : [];
}

/**
 * Starts `stackpin <args>` as the leader of its own process group and SIGKILLs the whole group at the
 * kill point. Resolves to whether the kill landed before the CLI exited on its own.
 */
async function runAndKill(project: TempProject, args: string[], kill: KillPoint): Promise<{ killed: boolean; stderr: string }> {
  const env = Object.fromEntries(Object.entries(project.env).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv;
  const child = spawn(process.execPath, [cliEntry, ...args], { cwd: project.dir, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  let exited = false;
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  child.on("exit", () => (exited = true));
  child.stdout.resume();
  let fire!: () => void;
  const reached = new Promise<void>((resolve) => (fire = resolve));
  const started = Date.now();
  child.stderr.on("data", (d) => {
    stderr += d;
    if (kill.kind === "stderr-line" && stderr.split("\n").length - 1 >= kill.n) fire();
  });
  let poll: NodeJS.Timeout | undefined;
  if (kill.kind === "delay") setTimeout(fire, kill.ms).unref();
  if (kill.kind === "lock-then-delay") {
    poll = setInterval(() => {
      if (lockFiles(project).length) {
        clearInterval(poll);
        setTimeout(fire, kill.ms).unref();
      }
    }, 10);
  }
  await Promise.race([reached, closed]);
  clearInterval(poll);
  const killed = !exited;
  if (killed) {
    try {
      process.kill(-(child.pid as number), "SIGKILL");
    } catch {
      // the group ended between the check and the kill
    }
  }
  await closed;
  return { killed, stderr: `${stderr}\n[killed ${describeKill(kill)}, ${Date.now() - started} ms in]` };
}

async function health(endpoint: string): Promise<{ version: string }> {
  const res = await fetch(`${endpoint}/health`);
  assert.equal(res.status, 200);
  return (await res.json()) as { version: string };
}

describe("kill -9 at any moment of a deploy or rollback, then the same command again", function () {
  let project: TempProject;

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    for (const v of ["v1", "v2"]) {
      const r = await project.cli(["deploy", "--stack", "dev", "--version", v, "--yes"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
  });
  after(async () => project?.teardown());

  it("recovers from a SIGKILL of the whole process group at seeded points spread over the operation", async function () {
    // A bound, not a wait: ten trials take about 2 minutes on a quiet machine and 4-8 on a loaded CI one.
    this.timeout(900_000);
    const seed = Number(process.env.STACKPIN_KILL9_SEED ?? 20261125);
    const trials = Number(process.env.STACKPIN_KILL9_TRIALS ?? 10);
    const random = prng(seed);
    // Bounded: on a loaded 2-core machine ten trials take about four minutes.
    const budgetMs = 330_000;
    const started = Date.now();
    let recovered = 0;
    let killed = 0;
    let insideEngine = 0;
    let insideUpdate = 0;
    let ran = 0;
    process.stderr.write(`      [kill9] seed ${seed}, ${trials} trials (STACKPIN_KILL9_SEED replays)\n`);
    for (let i = 0; i < trials; i++) {
      if (Date.now() - started > budgetMs) break;
      // Alternate so that every trial has work to do: rollback to v1 (switch back, stop green), deploy v2.
      const [args, target] = i % 2 === 0
        ? [["rollback", "--stack", "dev", "--to", "v1", "--yes", "--reason", `trial ${i}`], "v1"]
        : [["deploy", "--stack", "dev", "--version", "v2", "--yes", "-m", `trial ${i}`], "v2"];
      const r = random();
      const kill: KillPoint =
        r < 0.4 ? { kind: "stderr-line", n: 1 + Math.floor(random() * 14) }
        : r < 0.7 ? { kind: "lock-then-delay", ms: Math.floor(random() * 2500) }
        : { kind: "delay", ms: Math.floor(random() * 7000) };
      ran++;
      const first = await runAndKill(project, args, kill);
      if (first.killed) killed++;

      const again = await project.cli([...args, "--json"]);
      const trial = `trial ${i} (${args[0]} to ${target}, killed ${describeKill(kill)}):\nfirst run:\n${first.stderr}\nsecond run:\n${again.stderr}`;
      assert.equal(again.code, ExitCode.ok, trial);
      const result = json(again);
      if (result.recovery?.interrupted) insideEngine++;
      // A kill inside the preview leaves a lease and a lock, removed without a refresh; one inside the update is refreshed.
      if (result.recovery?.interrupted && result.recovery.interrupted.op !== "preview") insideUpdate++;
      if (result.recovery?.recovered) assert.match(again.stderr, /found an interrupted|cleaned up|in-flight mark/, trial);
      assert.equal(result.to, target, trial);
      // A first run that finished before its kill leaves the rollback's target live and verified: the second
      // run is then skipped (already live and verified), with nothing to verify.
      if (!result.skipped) assert.equal(result.verification?.passed, true, trial);
      else assert.equal(args[0], "rollback", trial);

      const [statusRun, verify] = await Promise.all([project.cli(["status", "--stack", "dev", "--json"]), project.cli(["audit", "verify", "--stack", "dev"])]);
      assert.equal(verify.code, ExitCode.ok, `${trial}\n${verify.stderr}`);
      const status = json(statusRun);
      assert.equal(status.liveVersion, target, trial);
      assert.equal((await health(status.outputs.endpoint.value)).version, target, trial);
      // What runs is exactly what the state says runs: the slots' services and the switch.
      const slots = status.outputs.slots.value as Record<string, { pid: number }>;
      const expected = [...Object.values(slots).map((s) => s.pid), status.outputs.switchPid.value as number].sort();
      assert.deepEqual(processesOf(project.dir).sort(), expected, `${trial}\norphan processes`);
      assert.deepEqual(lockFiles(project), [], `${trial}\na lock was left behind`);
      if (first.killed && result.recovery?.interrupted) {
        const incident = result.incident?.json && JSON.parse(fs.readFileSync(result.incident.json, "utf8"));
        if (incident) assert.ok(incident.timeline.some((t: { step: string }) => / interrupted$/.test(t.step)), `${trial}\nthe incident record does not say the operation was interrupted`);
      }
      recovered++;
    }
    process.stderr.write(
      `      [figures] recovered ${recovered}/${ran} trials (${killed} killed before they finished, ${insideEngine} of them inside the engine, ${insideUpdate} inside an update; ${((Date.now() - started) / 1000).toFixed(0)} s)\n`,
    );
    assert.ok(ran >= Math.min(trials, 10), `only ${ran} trials fit in the time budget`);
    assert.ok(insideEngine >= 1, "no kill landed inside an engine update: the kill points do not cover the operation");
    const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
    if (insideUpdate) assert.ok(history.some((h: { op: string; reason?: string }) => h.op === "refresh" && /recovered after an interrupted/.test(h.reason ?? "")));
    const audit = await project.cli(["audit", "show", "--stack", "dev", "--json"]);
    if (insideUpdate) assert.ok(json(audit).entries.some((e: { op: string; detail?: string }) => e.op === "recover" && /recovered after an interrupted (rollback|deploy) v\d -> v\d/.test(e.detail ?? "")));
  });

  it("recover on a healthy stack says there is nothing to recover and changes nothing", async () => {
    const before = project.stateDigest();
    const r = await project.cli(["recover", "--stack", "dev"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.match(r.stdout, /nothing to recover on stack dev/);
    assert.equal(project.stateDigest(), before);
  });

  it("a lock from another host is refused with exit 7 and an unchanged backend; only recover --force breaks it", async () => {
    const dir = path.join(project.stateDir, ".pulumi", "locks", "organization", "stackpin-demo", "dev");
    fs.mkdirSync(dir, { recursive: true });
    const lock = path.join(dir, "00000000-0000-4000-8000-000000000000.json");
    fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, username: "ops", hostname: `not-${os.hostname()}`, timestamp: new Date().toISOString() }));
    const before = project.stateDigest();
    for (const args of [["rollback", "--stack", "dev", "--to", "v1", "--yes"], ["recover", "--stack", "dev"]]) {
      const r = await project.cli(args);
      assert.equal(r.code, ExitCode.concurrentOperation, r.stderr);
      assert.match(r.stderr, /another operation is running on stack dev .*another host.*stackpin recover --stack dev --force/s);
      assert.equal(project.stateDigest(), before, `${args[0]} changed the backend`);
    }
    const forced = await project.cli(["recover", "--stack", "dev", "--force"]);
    assert.equal(forced.code, ExitCode.ok, forced.stderr);
    assert.ok(!fs.existsSync(lock));
    assert.match(forced.stdout, /recovered after an interrupted update/);
  });

  it("a lock held by a live operation is still refused with exit 7; the live operation finishes", async () => {
    project.writeVersion("v9", "version: v9\nconfig:\n  message: slow\n  rolloutDelayMs: 10000\n");
    const live = project.start(["deploy", "--stack", "dev", "--version", "v9", "--yes"]);
    const deadline = Date.now() + 60_000;
    while (lockFiles(project).length === 0) {
      assert.ok(Date.now() < deadline, "the live deploy never took the lock");
      await new Promise((r) => setTimeout(r, 50));
    }
    const held = lockFiles(project);
    try {
      for (const args of [["recover", "--stack", "dev", "--force"], ["destroy", "--stack", "dev", "--yes"]]) {
        const r = await project.cli(args);
        assert.equal(r.code, ExitCode.concurrentOperation, `${args.join(" ")}\n${r.stderr}`);
        assert.match(r.stderr, /another operation is running on stack dev .*is running/s);
        assert.deepEqual(lockFiles(project), held, "the live operation's lock was touched");
      }
    } finally {
      // Even when an assertion fails, the live deploy ends before the suite's teardown destroys the stack.
      await live.done;
    }
    const done = await live.done;
    assert.equal(done.code, ExitCode.ok, done.stderr);
    const status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.equal(status.liveVersion, "v9");
  });
});
