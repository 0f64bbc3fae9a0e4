import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { ExitCode } from "../../lib/errors";
import { CliRun, json, processesOf, prng, pulumiOrSkip, TempProject, tempProject } from "./harness";
import { fileAppears, ownProgramProject } from "./own-program";
import { S3Server, startS3Server, versitygwOrSkip } from "./s3-server";

/** Polls `condition` until it holds or `ms` pass: for effects another process finishes on its own (a plugin exiting). */
async function eventually(condition: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A mark as another machine would have left it: its hostname, a pid, its lease. */
function foreignMark(what: string, since: Date, renewedAt: Date, ttlMs: number) {
  return {
    what,
    kind: "update",
    id: `foreign-${since.getTime()}`,
    pid: 4242,
    hostname: `pod-${os.hostname()}-elsewhere`,
    bootId: "00000000-0000-4000-8000-000000000000",
    pidNs: "pid:[4026532999]",
    since: since.toISOString(),
    renewedAt: renewedAt.toISOString(),
    ttlMs,
  };
}

/** The lock Pulumi writes, as written on that other machine after its mark. */
function foreignLock(at: Date) {
  return { pid: 4243, username: "ci", hostname: `pod-${os.hostname()}-elsewhere`, timestamp: at.toISOString() };
}

describe("two clones on one s3:// bucket: a killed operator's stack is taken over by the other, a live one is never broken", function () {
  this.timeout(900_000);
  let s3: S3Server | undefined;
  let alice: TempProject | undefined;
  let bob: TempProject | undefined;
  const prefix = "leases/state";
  const on = (who: TempProject | undefined, args: string[]): Promise<CliRun> => who!.cli(args);
  const lockKeys = async () =>
    ((await s3!.client.send(new ListObjectsV2Command({ Bucket: s3!.bucket, Prefix: `${prefix}/.pulumi/locks/` }))).Contents ?? []).map((o) => o.Key!);
  const recordsKey = `${prefix}/.stackpin/checkout/checkout.json`;
  const readRecords = async () => JSON.parse(await (await s3!.client.send(new GetObjectCommand({ Bucket: s3!.bucket, Key: recordsKey }))).Body!.transformToString());
  const writeRecords = async (doc: unknown) => {
    await s3!.client.send(new PutObjectCommand({ Bucket: s3!.bucket, Key: recordsKey, Body: JSON.stringify(doc) }));
  };

  before(async function () {
    const binary = versitygwOrSkip(this);
    const pulumi = await pulumiOrSkip(this);
    s3 = await startS3Server(binary);
    const backendUrl = `s3://${s3.bucket}/${prefix}?endpoint=${encodeURIComponent(s3.endpoint)}&s3ForcePathStyle=true&region=us-east-1`;
    alice = ownProgramProject(pulumi, { stackYaml: `backend: ${backendUrl}\n` });
    bob = ownProgramProject(pulumi, { stackYaml: `backend: ${backendUrl}\n` });
    Object.assign(alice.env, s3.env, { STACKPIN_ACTOR: "alice" });
    Object.assign(bob.env, s3.env, { STACKPIN_ACTOR: "bob" });
    const v1 = await on(alice, ["deploy", "--stack", "checkout", "--version", "v1", "--yes"]);
    assert.equal(v1.code, ExitCode.ok, v1.stderr);
    // The first deploy wrote the passphrase salt into stack.yaml; bob pulls it, as from git.
    const stackYaml = path.join("stacks", "checkout", "stack.yaml");
    fs.copyFileSync(path.join(alice.dir, stackYaml), path.join(bob.dir, stackYaml));
  });

  after(async () => {
    try {
      if (alice && s3) {
        // A test that failed while alice's deploy was held lets it go first.
        for (const f of fs.readdirSync(alice.dir).filter((f) => f.endsWith(".waiting"))) fs.writeFileSync(path.join(alice.dir, f.slice(0, -".waiting".length)), "go");
        const r = await on(alice, ["destroy", "--stack", "checkout", "--yes"]);
        assert.equal(r.code, ExitCode.ok, r.stderr);
      }
    } finally {
      // Every part is torn down; the first failure is reported.
      const failures = (await Promise.allSettled([alice?.teardown(), bob?.teardown()])).filter((r) => r.status === "rejected");
      await s3?.stop();
      if (failures.length) throw (failures[0] as PromiseRejectedResult).reason;
    }
  });

  it("alice is killed with SIGKILL inside her update, again and again: bob's next command recovers every time, nothing left running", async () => {
    const seed = Number(process.env.STACKPIN_LEASE_SEED ?? 20261206);
    const random = prng(seed);
    const trials = 10;
    const started = Date.now();
    let takeovers = 0;
    for (let i = 1; i <= trials; i++) {
      const hold = path.join(alice!.dir, `hold-${i}`);
      alice!.writeVersion(`v${10 + i}`, `version: v${10 + i}\nconfig:\n  greeting: alice's release ${i}\n  replicas: 3\n  holdFile: ${hold}\n`);
      const deploying = alice!.start(["deploy", "--stack", "checkout", "--version", `v${10 + i}`, "--yes"], { detached: true });
      // Inside the update: the engine holds Pulumi's lock and the resource's update is pending.
      await fileAppears(`${hold}.waiting`, deploying.done);
      const delay = Math.floor(random() * 400);
      await new Promise((r) => setTimeout(r, delay));
      const trial = `trial ${i} (seed ${seed}, killed ${delay} ms into the held resource update)`;
      process.kill(-deploying.pid, "SIGKILL");
      const killed = await deploying.done;
      assert.notEqual(killed.code, ExitCode.ok, `${trial}: alice's deploy was not killed`);

      const target = i % 2 ? "v2" : "v1";
      const next = await on(bob, ["deploy", "--stack", "checkout", "--version", target, "--yes"]);
      assert.equal(next.code, ExitCode.ok, `${trial}\n${next.stderr}`);
      assert.match(next.stderr, /found an interrupted deploy v\d+ -> v\d+ on checkout/, trial);
      takeovers++;
      assert.deepEqual(await lockKeys(), [], `${trial}: a Pulumi lock was left in the bucket`);
      assert.equal((await readRecords()).inFlight, undefined, `${trial}: an in-flight mark was left`);
      const status = json(await on(bob, ["status", "--stack", "checkout", "--json"]));
      assert.equal(status.liveVersion, target, trial);
      // The killed operation's engine plugins end with it (nobody on alice's machine has to clean up).
      assert.ok(await eventually(() => processesOf(alice!.dir).length === 0, 10_000), `${trial}: processes of alice's killed deploy are still running: ${processesOf(alice!.dir).join(", ")}`);
    }
    process.stderr.write(`      [figures] leases: ${takeovers}/${trials} kill -9 trials inside the update taken over by the other clone, 0 processes left (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  });

  it("while alice's operation runs, bob is refused with exit 7 and the time left on her lease, recover --force included; hers completes", async () => {
    const hold = path.join(alice!.dir, "hold-live");
    alice!.writeVersion("v30", `version: v30\nconfig:\n  greeting: alice live\n  replicas: 2\n  holdFile: ${hold}\n`);
    const deploying = alice!.start(["deploy", "--stack", "checkout", "--version", "v30", "--yes"]);
    await fileAppears(`${hold}.waiting`, deploying.done);
    try {
      const held = (await readRecords()).inFlight;
      assert.equal(held?.what, `stackpin deploy v1 -> v30 by alice`);
      for (const args of [["deploy", "--stack", "checkout", "--version", "v1", "--yes"], ["recover", "--stack", "checkout", "--force"]]) {
        const r = await on(bob, args);
        assert.equal(r.code, ExitCode.concurrentOperation, r.stderr);
        assert.match(r.stderr, /another operation is running on stack checkout \(stackpin deploy v1 -> v30 by alice.*its lease runs until \S+ \(\d+ s left\)/s, args[0]);
        assert.match(r.stderr, /never broken, --force included/);
        const jr = await on(bob, [...args, "--json"]);
        assert.equal(jr.code, ExitCode.concurrentOperation);
        assert.ok(Date.parse(json(jr).error.details.expiresAt) > Date.now(), jr.stdout);
      }
      // Alice's mark is still hers (renewed by her heartbeat meanwhile, never replaced), her lock in place.
      const after = (await readRecords()).inFlight;
      assert.deepEqual([after?.id, after?.since, after?.pid], [held.id, held.since, held.pid], "bob's refusals touched alice's mark");
      assert.ok(Date.parse(after.renewedAt) >= Date.parse(held.renewedAt));
      assert.equal((await lockKeys()).length, 1);
    } finally {
      fs.writeFileSync(hold, "go");
    }
    const done = await deploying.done;
    assert.equal(done.code, ExitCode.ok, done.stderr);
    assert.equal(json(await on(bob, ["status", "--stack", "checkout", "--json"])).liveVersion, "v30");
  });

  it("a mark and lock left on another host are cleared by the next command once the lease expired; a mark whose update ended is cleared with a fresh lease", async () => {
    // Expired: written 10 minutes ago with a 60 s lease, never renewed (its pod was killed), its lock after it.
    const since = new Date(Date.now() - 600_000);
    const doc = await readRecords();
    await writeRecords({ ...doc, inFlight: foreignMark("stackpin deploy v30 -> v2 by fleet-job", since, since, 60_000) });
    const lockKey = `${prefix}/.pulumi/locks/organization/checkout/checkout/11111111-2222-4333-8444-555555555555.json`;
    await s3!.client.send(new PutObjectCommand({ Bucket: s3!.bucket, Key: lockKey, Body: JSON.stringify(foreignLock(new Date(since.getTime() + 500))) }));
    const r = await on(bob, ["deploy", "--stack", "checkout", "--version", "v2", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.match(r.stderr, /its lease expired at/);
    assert.deepEqual(await lockKeys(), []);
    assert.equal((await readRecords()).inFlight, undefined);

    // Ended: the mark of the update just applied, its lease still fresh (the pod died after the update ended).
    const newest = json(await on(bob, ["history", "--stack", "checkout", "--json"]))[0] as { op: string; from?: string; to: string; who?: string; startedAt: string };
    assert.deepEqual([newest.op, newest.to, newest.who], ["deploy", "v2", "bob"]);
    const what = `stackpin deploy ${newest.from} -> v2 by bob`;
    await writeRecords({ ...(await readRecords()), inFlight: foreignMark(what, new Date(newest.startedAt), new Date(), 3_600_000) });
    const again = await on(bob, ["rollback", "--stack", "checkout", "--to", "v1", "--yes"]);
    assert.equal(again.code, ExitCode.ok, again.stderr);
    assert.equal((await readRecords()).inFlight, undefined);
    await s3!.client.send(new DeleteObjectCommand({ Bucket: s3!.bucket, Key: lockKey })).catch(() => undefined);
  });
});

describe("a mark left by another host on a file:// backend", function () {
  this.timeout(300_000);
  let project: TempProject;
  const recordsFile = () => path.join(project.stateDir, ".stackpin", "stackpin-demo", "dev.json");

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
  });
  after(async () => project?.teardown());

  it("is refused while its lease is fresh (exit 7, the time left, --force included), and cleared by the next command once it expired", async () => {
    const doc = JSON.parse(fs.readFileSync(recordsFile(), "utf8"));
    const since = new Date(Date.now() - 30_000);
    fs.writeFileSync(recordsFile(), JSON.stringify({ ...doc, inFlight: foreignMark("stackpin deploy v1 -> v2 by fleet-job", since, new Date(), 120_000) }));
    const before = project.stateDigest();
    for (const args of [["deploy", "--stack", "dev", "--version", "v2", "--yes"], ["recover", "--stack", "dev", "--force"]]) {
      const r = await project.cli(args);
      assert.equal(r.code, ExitCode.concurrentOperation, r.stderr);
      assert.match(r.stderr, /holds a lease until \S+ \(\d+ s left\)/);
      assert.equal(project.stateDigest(), before, `${args[0]} changed the backend`);
    }
    // The same mark, its lease lapsed: the next command recovers and applies.
    fs.writeFileSync(recordsFile(), JSON.stringify({ ...doc, inFlight: foreignMark("stackpin deploy v1 -> v2 by fleet-job", since, since, 20_000) }));
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v2", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.match(r.stderr, /found an interrupted deploy v1 -> v2 on dev/);
    assert.equal(JSON.parse(fs.readFileSync(recordsFile(), "utf8")).inFlight, undefined);
  });
});
