import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { packageRoot, PulumiCli } from "../../lib/engine/pulumi-cli";
import { ExitCode } from "../../lib/errors";
import { S3AuditLog } from "../../lib/records/audit";
import { checkConditionalWrites, s3LocationOf } from "../../lib/records/s3-backend";
import { CliRun, json, pulumiOrSkip, TempProject, tempProject } from "./harness";
import { S3Server, startS3Server, versitygwOrSkip } from "./s3-server";
import { gatedChild } from "../unit/gated-child";

const auditModule = path.join(__dirname, "..", "..", "lib", "records", "audit.js");
const s3Module = path.join(__dirname, "..", "..", "lib", "records", "s3-backend.js");

// A process appending to the shared trail through stackpin's own S3 trail, as a second machine's
// stackpin does; told to go once both are ready, so the appends overlap.
const appenderScript = `
const { S3AuditLog } = require(process.argv[1]);
const { s3LocationOf } = require(process.argv[2]);
const log = new S3AuditLog(s3LocationOf(process.argv[3]), "stackpin-demo", "dev");
process.stdout.write("ready\\n");
process.stdin.once("data", async () => {
  for (let i = 0; i < Number(process.argv[4]); i++) {
    await log.append({ stack: "dev", actor: "writer-" + process.pid, op: "deploy", result: "succeeded", detail: "append " + i });
  }
  process.exit(0);
});
`;

/**
 * A proxy in front of the S3 server that passes every request through unchanged (the Host header too, so
 * signatures hold), except that the answer of the next `lose` PUTs to a key matching `key` is replaced by
 * a 500 once the server has performed them: a response lost on the way back.
 */
async function losingProxy(upstream: string, key: RegExp) {
  const target = new URL(upstream);
  let lose = 0;
  const lost: string[] = [];
  const server = http.createServer((req, res) => {
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      if (req.method === "PUT" && lose > 0 && key.test(new URL(req.url ?? "/", upstream).pathname) && (answer.statusCode ?? 0) < 300) {
        lose--;
        lost.push(`${req.method} ${req.url} ${answer.statusCode}`);
        answer.resume();
        res.writeHead(500, { "content-type": "application/xml" });
        res.end("<Error><Code>InternalError</Code><Message>lost on the way back</Message></Error>");
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    loseNext: (n: number) => void (lose = n),
    lost,
    stop: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

describe("an s3:// backend shared by two machines: records and audit trail in the bucket (real engine, real S3 server)", function () {
  this.timeout(600_000);
  let s3: S3Server | undefined;
  let pulumi: PulumiCli;
  // Two operators: their own project directory, PULUMI_HOME and engine work dirs, the same backend URL and
  // the same stacks/dev/stack.yaml (with its encryption salt), as a team would share it in git.
  let alice: TempProject | undefined;
  let bob: TempProject | undefined;
  let backendUrl = "";
  const prefix = "team/state";
  const on = (who: TempProject | undefined, actor: string, args: string[]): Promise<CliRun> =>
    who!.cli(args, { env: { ...s3!.env, STACKPIN_BACKEND: backendUrl, STACKPIN_ACTOR: actor } });
  const objects = async (): Promise<{ key: string; etag: string }[]> => {
    const r = await s3!.client.send(new ListObjectsV2Command({ Bucket: s3!.bucket }));
    return (r.Contents ?? []).map((o) => ({ key: o.Key!, etag: o.ETag! })).sort((a, b) => a.key.localeCompare(b.key));
  };
  const keys = async (): Promise<string[]> => (await objects()).map((o) => o.key);
  // The state and stackpin's records, by ETag: everything but the audit trail (a refusal is appended to it).
  const stateDigest = async (): Promise<string[]> => (await objects()).filter((o) => !o.key.includes("/.stackpin-audit/")).map((o) => `${o.key} ${o.etag}`);

  before(async function () {
    const binary = versitygwOrSkip(this);
    pulumi = await pulumiOrSkip(this);
    s3 = await startS3Server(binary);
    backendUrl = s3.backendUrl(prefix);
    alice = tempProject(pulumi);
    bob = tempProject(pulumi);
    const deploy = await on(alice, "alice", ["deploy", "--stack", "dev", "--version", "v1", "--yes", "--json"]);
    assert.equal(deploy.code, ExitCode.ok, deploy.stderr);
  });

  after(async () => {
    if (alice && s3) {
      const r = await on(alice, "alice", ["destroy", "--stack", "dev", "--yes"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
    await alice?.teardown();
    await bob?.teardown();
    await s3?.stop();
  });

  it("keeps the records and the trail in the state's bucket, under the backend URL's path prefix", async () => {
    assert.equal((await on(bob, "bob", ["freeze", "--stack", "dev", "--reason", "incident 7: bob freezes"])).code, ExitCode.ok);
    const all = await keys();
    assert.ok(all.includes(`${prefix}/.stackpin/stackpin-demo/dev.json`), all.join("\n"));
    assert.ok(all.includes(`${prefix}/.stackpin-audit/stackpin-demo/dev.jsonl`), all.join("\n"));
    assert.ok(all.includes(`${prefix}/.stackpin-audit/stackpin-demo/dev.head`), all.join("\n"));
    assert.ok(all.some((k) => k.startsWith(`${prefix}/.pulumi/stacks/`)), `Pulumi's state is not under the same prefix:\n${all.join("\n")}`);
    assert.ok(all.every((k) => k.startsWith(`${prefix}/`)), all.join("\n"));
    assert.deepEqual(all.filter((k) => k.includes("cas-check")), [], "a store check left its probe object behind");
    process.stderr.write(`      [figures] s3 bucket: ${all.length} objects under ${prefix}/, records and trail beside .pulumi/\n`);
  });

  it("a freeze set on one machine stops a deploy on the other (exit 14), which sees it in status", async () => {
    const status = json(await on(alice, "alice", ["status", "--stack", "dev", "--json"]));
    assert.equal(status.freeze?.reason, "incident 7: bob freezes");
    assert.equal(status.freeze?.by, "bob");
    const before = await stateDigest();
    const refused = await on(alice, "alice", ["deploy", "--stack", "dev", "--version", "v2", "--yes"]);
    assert.equal(refused.code, ExitCode.frozen, refused.stderr);
    assert.match(refused.stderr, /incident 7: bob freezes/);
    assert.deepEqual(await stateDigest(), before, "the refused deploy changed the state or the records");
    assert.equal((await on(bob, "bob", ["unfreeze", "--stack", "dev", "--reason", "incident 7 resolved"])).code, ExitCode.ok);
    assert.equal(json(await on(alice, "alice", ["status", "--stack", "dev", "--json"])).freeze, undefined);
  });

  it("both machines verify the same trail, holding both machines' entries", async () => {
    const fromAlice = await on(alice, "alice", ["audit", "verify", "--stack", "dev", "--json"]);
    const fromBob = await on(bob, "bob", ["audit", "verify", "--stack", "dev", "--json"]);
    assert.equal(fromAlice.code, ExitCode.ok, fromAlice.stdout + fromAlice.stderr);
    assert.equal(fromBob.code, ExitCode.ok, fromBob.stdout + fromBob.stderr);
    const [va, vb] = [json(fromAlice), json(fromBob)];
    assert.deepEqual(va, vb);
    assert.equal(va.file, `s3://${s3!.bucket}/${prefix}/.stackpin-audit/stackpin-demo/dev.jsonl`);
    const shown = json(await on(bob, "bob", ["audit", "show", "--stack", "dev", "--json"]));
    const trail = shown.entries.map((e: { actor: string; op: string; result: string }) => `${e.actor} ${e.op} ${e.result}`);
    assert.deepEqual(trail, ["alice deploy succeeded", "bob freeze succeeded", "alice deploy refused", "bob unfreeze succeeded"]);
    process.stderr.write(`      [figures] s3 shared trail: ${va.entries} entries, verified identically from both machines: ${trail.join(", ")}\n`);
  });

  it("two processes appending 20 entries each at once leave one unforked chain of 40 more", async () => {
    const before = json(await on(alice, "alice", ["audit", "verify", "--stack", "dev", "--json"])).entries as number;
    const writers = [0, 1].map(() =>
      gatedChild("appender", appenderScript, [auditModule, s3Module, backendUrl, "20"], { PATH: process.env.PATH, HOME: process.env.HOME, ...s3!.env }),
    );
    await Promise.all(writers.map((w) => w.ready));
    const started = Date.now();
    writers.forEach((w) => w.go());
    const codes = await Promise.all(writers.map((w) => w.done));
    const took = Date.now() - started;
    assert.deepEqual(codes, [0, 0], writers.map((w) => w.stderr()).join("\n"));
    const fromBob = await on(bob, "bob", ["audit", "verify", "--stack", "dev", "--json"]);
    assert.equal(fromBob.code, ExitCode.ok, fromBob.stdout + fromBob.stderr);
    const v = json(fromBob);
    assert.equal(v.entries, before + 40);
    assert.equal(v.interrupted, undefined);
    const entries = json(await on(alice, "alice", ["audit", "show", "--stack", "dev", "--json"])).entries as { seq: number; actor: string }[];
    assert.deepEqual(entries.map((e) => e.seq), entries.map((_, i) => i + 1));
    const perWriter = new Map<string, number>();
    for (const e of entries.slice(before)) perWriter.set(e.actor, (perWriter.get(e.actor) ?? 0) + 1);
    assert.deepEqual([...perWriter.values()], [20, 20]);
    process.stderr.write(`      [figures] s3 concurrent appends: 2 x 20 -> ${v.entries - before} new entries in one chain of ${v.entries} (${(took / 1000).toFixed(1)} s)\n`);
  });

  it("status and history read the bucket loading nothing but the CLI's bundle: no AWS SDK", async () => {
    // Node's own record of the modules the process required, written as it exits.
    const hook = path.join(bob!.dir, "modules-loaded.js");
    const list = path.join(bob!.dir, "modules-loaded.json");
    fs.writeFileSync(hook, `process.on("exit", () => require("node:fs").writeFileSync(${JSON.stringify(list)}, JSON.stringify(Object.keys(require.cache))));\n`);
    try {
      for (const args of [["status"], ["history"], ["status", "--json"], ["history", "--json"]]) {
        const r = await bob!.cli([...args, "--stack", "dev"], { env: { ...s3!.env, STACKPIN_BACKEND: backendUrl, STACKPIN_ACTOR: "bob", NODE_OPTIONS: `--require ${hook}` } });
        assert.equal(r.code, ExitCode.ok, r.stderr);
        const loaded = (JSON.parse(fs.readFileSync(list, "utf8")) as string[]).filter((f) => f !== hook);
        assert.deepEqual(loaded, [path.join(packageRoot(), "dist", "lib", "cli", "main.js")], `${args.join(" ")} loaded:\n${loaded.join("\n")}`);
      }
    } finally {
      fs.rmSync(hook, { force: true });
      fs.rmSync(list, { force: true });
    }
  });

  it("with a wrong secret key, status says what the store answered", async () => {
    const r = await bob!.cli(["status", "--stack", "dev"], { env: { ...s3!.env, AWS_SECRET_ACCESS_KEY: "not-the-key", STACKPIN_BACKEND: backendUrl, STACKPIN_ACTOR: "bob" } });
    assert.notEqual(r.code, ExitCode.ok);
    assert.match(r.stderr, /The request signature we calculated does not match the signature you provided/);
  });

  it("the store check passes on the S3 server: it honours If-Match and If-None-Match", async () => {
    const loc = { ...s3LocationOf(backendUrl)!, client: s3!.client };
    const started = Date.now();
    await checkConditionalWrites(loc);
    const took = Date.now() - started;
    assert.deepEqual((await keys()).filter((k) => k.includes("cas-check")), []);
    process.stderr.write(`      [figures] s3 store check: conditional writes honoured, probe removed (${took} ms)\n`);
  });

  it("an append whose answer is lost on the way back is retried by the SDK and lands once; audit verify is ok", async () => {
    const before = json(await on(alice, "alice", ["audit", "verify", "--stack", "dev", "--json"])).entries as number;
    const proxy = await losingProxy(s3!.endpoint, /\/dev\.jsonl$/);
    const client = new S3Client({ endpoint: proxy.endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: s3!.env.AWS_ACCESS_KEY_ID!, secretAccessKey: s3!.env.AWS_SECRET_ACCESS_KEY! } });
    try {
      const trail = new S3AuditLog({ ...s3LocationOf(backendUrl)!, client }, "stackpin-demo", "dev");
      proxy.loseNext(1);
      await trail.append({ stack: "dev", actor: "carol", op: "deploy", result: "succeeded", detail: "its answer was lost" });
      assert.equal(proxy.lost.length, 1, "no answer was lost: the scenario did not happen");
    } finally {
      client.destroy();
      await proxy.stop();
    }
    const verified = await on(bob, "bob", ["audit", "verify", "--stack", "dev", "--json"]);
    assert.equal(verified.code, ExitCode.ok, verified.stdout + verified.stderr);
    assert.equal(json(verified).entries, before + 1);
    const entries = json(await on(bob, "bob", ["audit", "show", "--stack", "dev", "--json"])).entries as { detail?: string }[];
    assert.equal(entries.filter((e) => e.detail === "its answer was lost").length, 1);
  });
});
