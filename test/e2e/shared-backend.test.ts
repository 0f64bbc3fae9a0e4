import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { ExitCode } from "../../lib/errors";
import { CliRun, json, pulumiOrSkip, TempProject } from "./harness";
import { fileAppears, ownProgramProject } from "./own-program";
import { S3Server, startS3Server, versitygwOrSkip } from "./s3-server";

/**
 * The adoption story on a shared S3 backend: two machines (project directories with their own
 * PULUMI_HOME and engine work dirs) whose stack.yaml names the same `backend: s3://…` (versitygw, started
 * by the test), running the team's own program by path.
 */
describe("two machines share one stack on an s3:// backend named in stack.yaml (real engine, real S3 server)", function () {
  this.timeout(600_000);
  let s3: S3Server | undefined;
  let alice: TempProject | undefined;
  let bob: TempProject | undefined;
  const prefix = "checkout/state";
  let backendUrl = "";
  const on = (who: TempProject | undefined, actor: string, args: string[]): Promise<CliRun> =>
    who!.cli(args, { env: { ...s3!.env, STACKPIN_ACTOR: actor } });
  const historyOf = async (who: TempProject | undefined, actor: string) => {
    const r = await on(who, actor, ["history", "--stack", "checkout", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    return (json(r) as { op: string; from?: string; to?: string; who?: string; result: string }[]).map((h) => `${h.op} ${h.from ?? "-"} -> ${h.to} by ${h.who} ${h.result}`);
  };
  const figures: string[] = [];

  before(async function () {
    const binary = versitygwOrSkip(this);
    const pulumi = await pulumiOrSkip(this);
    s3 = await startS3Server(binary);
    // The form the issue asks for: endpoint, path-style addressing and region in the URL.
    backendUrl = `s3://${s3.bucket}/${prefix}?endpoint=${encodeURIComponent(s3.endpoint)}&s3ForcePathStyle=true&region=us-east-1`;
    alice = ownProgramProject(pulumi, { stackYaml: `backend: ${backendUrl}\n` });
    bob = ownProgramProject(pulumi, { stackYaml: `backend: ${backendUrl}\n` });
    // Each machine's own credentials and name, for the commands started in the background too.
    Object.assign(alice.env, s3.env, { STACKPIN_ACTOR: "alice" });
    Object.assign(bob.env, s3.env, { STACKPIN_ACTOR: "bob" });
  });

  after(async () => {
    if (figures.length) process.stderr.write(`      [figures] shared s3 backend: ${figures.join("; ")}\n`);
    if (alice && s3) {
      const r = await on(alice, "alice", ["destroy", "--stack", "checkout", "--yes"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
    await alice?.teardown();
    await bob?.teardown();
    await s3?.stop();
  });

  it("alice deploys v1, bob (with stack.yaml as alice committed it) deploys v2: both see the same history", async () => {
    const v1 = await on(alice, "alice", ["deploy", "--stack", "checkout", "--version", "v1", "--yes"]);
    assert.equal(v1.code, ExitCode.ok, v1.stderr);
    // The first deploy wrote the passphrase salt into stack.yaml; bob pulls it, as from git.
    const stackYaml = path.join("stacks", "checkout", "stack.yaml");
    fs.copyFileSync(path.join(alice!.dir, stackYaml), path.join(bob!.dir, stackYaml));
    const v2 = await on(bob, "bob", ["deploy", "--stack", "checkout", "--version", "v2", "--yes"]);
    assert.equal(v2.code, ExitCode.ok, v2.stderr);
    const fromAlice = await historyOf(alice, "alice");
    assert.deepEqual(fromAlice, ["deploy v1 -> v2 by bob succeeded", "deploy - -> v1 by alice succeeded"]);
    assert.deepEqual(await historyOf(bob, "bob"), fromAlice);
    const keys = ((await s3!.client.send(new (await import("@aws-sdk/client-s3")).ListObjectsV2Command({ Bucket: s3!.bucket }))).Contents ?? []).map((o) => o.Key!);
    assert.ok(keys.every((k) => k.startsWith(`${prefix}/`)), keys.join("\n"));
    assert.ok(!fs.existsSync(path.join(alice!.dir, ".stackpin", "state")), "nothing of the state is kept on a machine");
  });

  it("a freeze from bob stops alice's deploy (exit 14); both see it, and it lifts for both", async () => {
    assert.equal((await on(bob, "bob", ["freeze", "--stack", "checkout", "--reason", "INC-9 checkout errors"])).code, ExitCode.ok);
    for (const [who, actor] of [[alice, "alice"], [bob, "bob"]] as const) {
      const status = json(await on(who, actor, ["status", "--stack", "checkout", "--json"]));
      assert.equal(status.freeze?.reason, "INC-9 checkout errors");
      assert.equal(status.liveVersion, "v2");
    }
    const refused = await on(alice, "alice", ["deploy", "--stack", "checkout", "--version", "v1", "--yes"]);
    assert.equal(refused.code, ExitCode.frozen, refused.stderr);
    assert.equal((await on(bob, "bob", ["unfreeze", "--stack", "checkout", "--reason", "INC-9 resolved"])).code, ExitCode.ok);
    assert.equal(json(await on(alice, "alice", ["status", "--stack", "checkout", "--json"])).freeze, undefined);
  });

  it("bob's rollback while alice's deploy runs is refused with exit 7; alice's deploy completes; then bob's rollback applies", async () => {
    const hold = path.join(alice!.dir, "release-v3");
    alice!.writeVersion("v3", `version: v3\nconfig:\n  greeting: hello from v3\n  replicas: 3\n  holdFile: ${hold}\n`);
    const deploying = alice!.start(["deploy", "--stack", "checkout", "--version", "v3", "--yes"]);
    // The held resource update runs inside alice's update: her lock and in-flight mark are in the bucket.
    await fileAppears(`${hold}.waiting`, deploying.done);
    const refused = await on(bob, "bob", ["rollback", "--stack", "checkout", "--to", "v1", "--yes"]);
    fs.writeFileSync(hold, "go");
    const deployed = await deploying.done;
    assert.equal(refused.code, ExitCode.concurrentOperation, refused.stderr);
    assert.match(refused.stderr, /another operation is running on stack checkout \(stackpin deploy v2 -> v3 by/);
    assert.match(refused.stderr, /Nothing was changed/);
    assert.equal(deployed.code, ExitCode.ok, deployed.stderr);
    assert.deepEqual((await historyOf(bob, "bob")).slice(0, 1), ["deploy v2 -> v3 by alice succeeded"]);
    figures.push("bob's rollback during alice's deploy: exit 7, alice's deploy exit 0");

    const back = await on(bob, "bob", ["rollback", "--stack", "checkout", "--to", "v1", "--yes", "-r", "INC-10"]);
    assert.equal(back.code, ExitCode.ok, back.stderr);
    const fromBob = await historyOf(bob, "bob");
    assert.deepEqual(fromBob, [
      "rollback v3 -> v1 by bob succeeded",
      "deploy v2 -> v3 by alice succeeded",
      "deploy v1 -> v2 by bob succeeded",
      "deploy - -> v1 by alice succeeded",
    ]);
    assert.deepEqual(await historyOf(alice, "alice"), fromBob);
    const status = json(await on(alice, "alice", ["status", "--stack", "checkout", "--json"]));
    assert.equal(status.outputs.noteText.value, "hello from v1");
  });

  it("both machines verify the same audit trail and the same head, the anchor object in the bucket", async () => {
    const [va, vb] = [await on(alice, "alice", ["audit", "verify", "--stack", "checkout", "--json"]), await on(bob, "bob", ["audit", "verify", "--stack", "checkout", "--json"])];
    assert.equal(va.code, ExitCode.ok, va.stdout + va.stderr);
    assert.deepEqual(json(va), json(vb));
    const [sa, sb] = [json(await on(alice, "alice", ["audit", "show", "--stack", "checkout", "--json"])), json(await on(bob, "bob", ["audit", "show", "--stack", "checkout", "--json"]))];
    assert.deepEqual(sa, sb);
    const last = sa.entries[sa.entries.length - 1] as { seq: number; hash: string };
    const anchor = await s3!.client.send(new GetObjectCommand({ Bucket: s3!.bucket, Key: `${prefix}/.stackpin-audit/checkout/checkout.head` }));
    assert.equal((await anchor.Body!.transformToString()).trim(), `${last.seq}:${last.hash}`);
    const trail = sa.entries.map((e: { actor: string; op: string; result: string }) => `${e.actor} ${e.op} ${e.result}`);
    assert.deepEqual(trail, [
      "alice deploy succeeded",
      "bob deploy succeeded",
      "bob freeze succeeded",
      "alice deploy refused",
      "bob unfreeze succeeded",
      "alice deploy succeeded",
      "bob rollback succeeded",
    ]);
    figures.push(`one trail of ${sa.entries.length} entries, head ${last.seq}:${last.hash.slice(0, 12)}… from both machines and in the bucket`);
  });
});
