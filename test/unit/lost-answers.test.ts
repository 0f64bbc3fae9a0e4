import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { AuditLog, S3AuditLog } from "../../lib/records/audit";
import { S3RecordStore } from "../../lib/records/ledger";
import { S3Location, s3LocationOf } from "../../lib/records/s3-backend";
import { signedReadsOf } from "../../lib/records/s3-reads";
import { doubleEnv, S3Double, startS3Double } from "./s3-double";

/**
 * The location stackpin reads from the backend URL, signing with the double's (unchecked) credentials:
 * reads through the SDK's client like writes, or `signed` without it (as with keys in the environment).
 */
function locationOf(double: S3Double, signed: boolean): S3Location {
  const loc = s3LocationOf(double.backendUrl())!;
  loc.client.destroy();
  const client = new S3Client({ endpoint: double.endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: "double", secretAccessKey: "double-secret" } });
  const reads = signed ? signedReadsOf({ bucket: double.bucket, region: "us-east-1", endpoint: double.endpoint, forcePathStyle: true }, doubleEnv, () => "") : undefined;
  assert.equal(signed, reads !== undefined);
  return { ...loc, client, reads };
}

/** A trail written by a stackpin whose entries had no id (three entries, anchored). */
const olderTrail = path.join(packageRoot(), "test", "fixtures", "audit", "older-trail");
const entry = (detail: string) => ({ stack: "dev", actor: "alice", op: "deploy", result: "succeeded" as const, detail });

for (const signed of [false, true]) {
  describe(`a write whose answer was lost, retried by the SDK, is not applied twice (reads ${signed ? "signed without the SDK" : "through the SDK"})`, function () {
    this.timeout(60_000);
    let double: S3Double;
    let loc: S3Location;
    beforeEach(async () => {
      double = await startS3Double({ conditional: true });
      loc = locationOf(double, signed);
    });
    afterEach(async () => {
      loc?.client.destroy();
      await double?.stop();
    });
    const lost = (key: RegExp) => double.requests.filter((r) => key.test(r.split(" ")[1]) && / (500|412) /.test(` ${r.split(" ")[2]} `)).map((r) => `${r.split(" ")[0]} ${r.split(" ")[2]}`);

    it("audit appends: the first (creating the trail) and a later one each lost once, the trail holds every entry once and verifies", async () => {
      const trail = new S3AuditLog(loc, "shop", "dev");
      double.loseResponses(/dev\.jsonl$/, 1);
      await trail.append(entry("one"));
      await trail.append(entry("two"));
      double.loseResponses(/dev\.jsonl$/, 1);
      const third = await trail.append(entry("three"));
      // What happened on the wire: each lost answer was a 500 for a write that landed, and the SDK's retry of it was refused (412).
      assert.deepEqual(lost(/dev\.jsonl$/), ["PUT 500", "PUT 412", "PUT 500", "PUT 412"]);
      const entries = await trail.entries();
      assert.deepEqual(entries.map((e) => `${e.seq} ${e.detail}`), ["1 one", "2 two", "3 three"]);
      assert.equal(new Set(entries.map((e) => e.id)).size, 3);
      assert.deepEqual(entries[2], third);
      const v = await trail.verify();
      assert.deepEqual({ ok: v.ok, entries: v.entries, problems: v.problems, interrupted: v.interrupted }, { ok: true, entries: 3, problems: [], interrupted: undefined });
    });

    it("a records write lost once is applied once: one generation, and the change sees the document as it was", async () => {
      const store = new S3RecordStore(loc, "shop", "dev");
      double.loseResponses(/dev\.json$/, 1);
      const seen: (string | undefined)[] = [];
      const written = await store.update((r) => {
        seen.push(r.freeze?.reason);
        r.freeze = { reason: "incident 7", by: "bob", at: "2025-03-01T09:05:00.000Z" };
      });
      assert.deepEqual(lost(/dev\.json$/), ["PUT 500", "PUT 412"]);
      assert.deepEqual(seen, [undefined], "the change ran again on its own write");
      const read = await store.read();
      assert.equal(read.generation, 1);
      assert.equal(written.generation, 1);
      assert.equal(read.freeze?.reason, "incident 7");
      await store.update((r) => delete r.freeze);
      assert.equal((await store.read()).generation, 2);
    });

    it("a trail written before entries had ids still verifies, on s3:// and file://, and so does an entry appended to it", async () => {
      double.objects.set(".stackpin-audit/shop/dev.jsonl", { body: fs.readFileSync(`${olderTrail}.jsonl`, "utf8"), etag: '"older-trail"' });
      double.objects.set(".stackpin-audit/shop/dev.head", { body: fs.readFileSync(`${olderTrail}.head`, "utf8"), etag: '"older-head"' });
      const trail = new S3AuditLog(loc, "shop", "dev");
      assert.equal((await trail.verify()).ok, true);
      assert.ok((await trail.entries()).every((e) => e.id === undefined));
      await trail.append(entry("after an older stackpin"));
      const v = await trail.verify();
      assert.deepEqual({ ok: v.ok, entries: v.entries, problems: v.problems }, { ok: true, entries: 4, problems: [] });
      assert.equal(typeof (await trail.entries())[3].id, "string");

      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-older-trail-"));
      try {
        fs.copyFileSync(`${olderTrail}.jsonl`, path.join(dir, "dev.jsonl"));
        fs.copyFileSync(`${olderTrail}.head`, path.join(dir, "dev.head"));
        const log = new AuditLog(path.join(dir, "dev.jsonl"), { stackName: "dev" });
        assert.equal((await log.verify()).ok, true);
        await log.append(entry("after an older stackpin"));
        assert.deepEqual((await log.verify()).problems, []);
        assert.equal(log.entries().length, 4);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it("an id added to an older entry afterwards is an edit: verify reports it", async () => {
      const lines = fs.readFileSync(`${olderTrail}.jsonl`, "utf8").split("\n");
      lines[1] = JSON.stringify({ id: "made-up", ...JSON.parse(lines[1]) });
      double.objects.set(".stackpin-audit/shop/dev.jsonl", { body: lines.join("\n"), etag: '"edited"' });
      double.objects.set(".stackpin-audit/shop/dev.head", { body: fs.readFileSync(`${olderTrail}.head`, "utf8"), etag: '"older-head"' });
      const v = await new S3AuditLog(loc, "shop", "dev").verify();
      assert.equal(v.ok, false);
      assert.ok(v.problems.includes("entry 2 was edited: its hash does not match its content"), v.problems.join("\n"));
    });
  });
}
