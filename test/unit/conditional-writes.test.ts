import { strict as assert } from "node:assert";
import { S3Client } from "@aws-sdk/client-s3";
import { BackendUnsupportedError, ExitCode } from "../../lib/errors";
import { S3AuditLog } from "../../lib/records/audit";
import { S3RecordStore } from "../../lib/records/ledger";
import { checkConditionalWrites, S3Location, s3LocationOf } from "../../lib/records/s3-backend";
import { S3Double, startS3Double } from "./s3-double";

/** The location stackpin reads from the backend URL, signing with the double's (unchecked) credentials. */
function locationOf(double: S3Double, prefix: string): S3Location {
  const loc = s3LocationOf(double.backendUrl(prefix))!;
  loc.client.destroy();
  return { ...loc, client: new S3Client({ endpoint: double.endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: "double", secretAccessKey: "double-secret" } }) };
}

const entry = (detail: string) => ({ stack: "dev", actor: "alice", op: "deploy", result: "succeeded" as const, detail });

describe("an s3:// store that ignores conditional writes is refused before stackpin writes its records there", function () {
  this.timeout(60_000);
  let double: S3Double;
  let loc: S3Location;
  before(async () => {
    double = await startS3Double({ conditional: false });
    loc = locationOf(double, "team/state");
  });
  after(async () => {
    loc?.client.destroy();
    await double?.stop();
  });

  it("the check is refused (exit 18), naming the store, its endpoint and what it lacks, and leaves nothing in the bucket", async () => {
    await assert.rejects(checkConditionalWrites(loc), (err: unknown) => {
      assert.ok(err instanceof BackendUnsupportedError, String(err));
      assert.equal(err.exitCode, ExitCode.backendUnsupported);
      assert.equal(err.store, `s3://double-bucket/team/state at ${double.endpoint}`);
      assert.match(err.message, /^s3:\/\/double-bucket\/team\/state at http:\/\/127\.0\.0\.1:\d+ ignores conditional writes \(If-Match\): stackpin cannot share records safely there\. /);
      assert.match(err.message, /It replaced an object whose ETag did not match, so two writers at once would both succeed and one write would be lost\./);
      assert.match(err.message, /Nothing was written\. Use a store that supports S3 conditional writes \(AWS S3, MinIO, versitygw…\)/);
      return true;
    });
    assert.deepEqual([...double.objects.keys()], [], "the check's own probe object was not removed");
  });

  it("an audit append and a records write are refused with the same error, and write nothing", async () => {
    const before = double.requests.length;
    await assert.rejects(new S3AuditLog(loc, "shop", "dev").append(entry("lost on such a store")), BackendUnsupportedError);
    await assert.rejects(new S3RecordStore(loc, "shop", "dev").update((r) => (r.freeze = { reason: "incident 7", by: "bob", at: "now" })), BackendUnsupportedError);
    assert.deepEqual([...double.objects.keys()], []);
    const writes = double.requests.slice(before).filter((r) => !r.startsWith("GET") && !r.startsWith("HEAD"));
    assert.deepEqual(writes, [], "a refused store was written to");
  });
});

describe("a store that honours If-Match but ignores If-None-Match is refused too", function () {
  it("names If-None-Match as what it lacks, and leaves nothing in the bucket", async () => {
    const double = await startS3Double({ conditional: "If-Match" });
    const loc = locationOf(double, "");
    try {
      await assert.rejects(checkConditionalWrites(loc), (err: unknown) => {
        assert.ok(err instanceof BackendUnsupportedError, String(err));
        assert.match(err.message, /^s3:\/\/double-bucket at http:\/\/127\.0\.0\.1:\d+ ignores conditional writes \(If-None-Match: \*\): stackpin cannot share records safely there\. It overwrote an object that exists,/);
        return true;
      });
      assert.deepEqual([...double.objects.keys()], []);
    } finally {
      loc.client.destroy();
      await double.stop();
    }
  });
});

describe("a store that honours conditional writes passes the check", function () {
  let double: S3Double;
  let loc: S3Location;
  before(async () => {
    double = await startS3Double({ conditional: true });
    loc = locationOf(double, "");
  });
  after(async () => {
    loc?.client.destroy();
    await double?.stop();
  });

  it("the check passes on a store that honours If-Match and If-None-Match, and removes its probe", async () => {
    await checkConditionalWrites(loc);
    assert.deepEqual([...double.objects.keys()], []);
    assert.deepEqual(
      double.requests.map((r) => r.replace(/cas-check-[0-9a-f-]+/, "cas-check-*")),
      [
        "PUT .stackpin/cas-check-* 200 if-none-match",
        "PUT .stackpin/cas-check-* 412 if-match",
        "PUT .stackpin/cas-check-* 412 if-none-match",
        "PUT .stackpin/cas-check-* 200 if-match",
        "DELETE .stackpin/cas-check-* 204",
      ],
    );
  });
});
