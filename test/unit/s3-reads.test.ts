import { strict as assert } from "node:assert";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import {
  getObjectRequest,
  listObjectKeys,
  listObjectsRequest,
  parseListObjectsPage,
  readObject,
  S3Address,
  S3ReadError,
  s3ReadErrorOf,
  signedReadsOf,
  SignedReads,
} from "../../lib/records/s3-reads";
import { S3Double, startS3Double } from "./s3-double";

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true"; // see lib/records/s3-backend.ts

const keys = { AWS_ACCESS_KEY_ID: "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" };
const noConfig = () => "";
const now = new Date("2026-12-06T16:30:00.000Z");

/** The URL the SDK sends a command to with this address (its request handler answers nothing). */
async function sdkUrl(address: S3Address, command: GetObjectCommand | ListObjectsV2Command): Promise<URL> {
  let sent: { protocol: string; hostname: string; port?: number; path: string; query?: Record<string, string> } | undefined;
  const client = new S3Client({
    region: address.region,
    endpoint: address.endpoint,
    forcePathStyle: address.forcePathStyle,
    credentials: { accessKeyId: keys.AWS_ACCESS_KEY_ID, secretAccessKey: keys.AWS_SECRET_ACCESS_KEY },
    maxAttempts: 1,
    requestHandler: {
      handle: async (request: typeof sent) => {
        sent = request;
        throw new Error("not sent");
      },
    },
  });
  await client.send(command as GetObjectCommand).catch(() => undefined);
  assert.ok(sent, "the SDK sent nothing");
  const url = new URL(`${sent.protocol}//${sent.hostname}${sent.port ? `:${sent.port}` : ""}${sent.path}`);
  for (const [k, v] of Object.entries(sent.query ?? {})) if (k !== "x-id") url.searchParams.set(k, v);
  return url;
}

const urlOf = (r: { protocol: string; host: string; path: string }) => new URL(`${r.protocol}//${r.host}${r.path}`);

describe("signed reads of an s3:// backend go where the SDK's would", function () {
  this.timeout(30_000);
  const addresses: S3Address[] = [
    { bucket: "team-state", region: "us-east-1", forcePathStyle: false },
    { bucket: "team-state", region: "eu-west-1", forcePathStyle: false },
    { bucket: "team.state", region: "eu-west-1", forcePathStyle: false },
    { bucket: "ab", region: "eu-west-1", forcePathStyle: false },
    { bucket: "team-state", region: "cn-north-1", forcePathStyle: false },
    { bucket: "team-state", region: "us-gov-west-1", forcePathStyle: false },
    { bucket: "team-state", region: "us-east-1", forcePathStyle: true },
    { bucket: "team-state", region: "us-east-1", endpoint: "http://127.0.0.1:9000", forcePathStyle: false },
    { bucket: "team-state", region: "us-east-1", endpoint: "http://[::1]:9000", forcePathStyle: false },
    { bucket: "team-state", region: "us-east-1", endpoint: "http://localhost:9000", forcePathStyle: false },
    { bucket: "team-state", region: "us-east-1", endpoint: "https://minio.example.com/base", forcePathStyle: false },
    { bucket: "team-state", region: "us-east-1", endpoint: "https://minio.example.com/base/", forcePathStyle: true },
    { bucket: "team.state", region: "eu-central-1", endpoint: "https://minio.example.com", forcePathStyle: false },
  ];
  for (const address of addresses) {
    it(`${address.bucket} in ${address.region}${address.endpoint ? ` at ${address.endpoint}` : ""}${address.forcePathStyle ? ", path style" : ""}`, async () => {
      const reads = signedReadsOf(address, keys, noConfig);
      assert.ok(reads);
      const key = "team/.pulumi/history/shop/dev/a b+c~!'()*é.history.json";
      const get = urlOf(getObjectRequest(reads, key, now));
      assert.equal(get.href, (await sdkUrl(address, new GetObjectCommand({ Bucket: address.bucket, Key: key }))).href);
      const list = urlOf(listObjectsRequest(reads, "team/.pulumi/x y", "a+b/c=", now));
      const sdkList = await sdkUrl(address, new ListObjectsV2Command({ Bucket: address.bucket, Prefix: "team/.pulumi/x y", ContinuationToken: "a+b/c=" }));
      assert.equal(`${list.origin}${list.pathname}`, `${sdkList.origin}${sdkList.pathname}`);
      assert.deepEqual([...list.searchParams].sort(), [...sdkList.searchParams].sort());
    });
  }
});

describe("signed reads are used only where the SDK could do nothing else", () => {
  const address: S3Address = { bucket: "team-state", region: "eu-west-1", forcePathStyle: false };

  it("with the environment's keys and a region, they are signed with those keys, for that region, at the time given", () => {
    const reads = signedReadsOf(address, { ...keys, AWS_SESSION_TOKEN: "token" }, noConfig);
    assert.deepEqual(reads?.credentials, { accessKeyId: "AKIDEXAMPLE", secretAccessKey: keys.AWS_SECRET_ACCESS_KEY, sessionToken: "token" });
    const request = getObjectRequest(reads!, "records.json", now);
    assert.equal(request.headers["X-Amz-Date"], "20261206T163000Z");
    assert.equal(request.headers["X-Amz-Security-Token"], "token");
    assert.match(request.headers.Authorization, /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/20261206\/eu-west-1\/s3\/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}$/);
  });

  const without: [string, S3Address, NodeJS.ProcessEnv, () => string][] = [
    ["no keys in the environment (a profile, SSO or the instance's role)", address, { AWS_PROFILE: "team" }, noConfig],
    ["only one of the two keys", address, { AWS_ACCESS_KEY_ID: "AKIDEXAMPLE" }, noConfig],
    ["keys beside AWS_PROFILE (the SDK takes the profile's)", address, { ...keys, AWS_PROFILE: "team" }, noConfig],
    ["no region (the SDK reads the profile's)", { ...address, region: undefined }, keys, noConfig],
    ["an endpoint from the environment", address, { ...keys, AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000" }, noConfig],
    ["FIPS endpoints asked for", address, { ...keys, AWS_USE_FIPS_ENDPOINT: "true" }, noConfig],
    ["dual-stack endpoints asked for", address, { ...keys, AWS_USE_DUALSTACK_ENDPOINT: "true" }, noConfig],
    ["an endpoint in the AWS config files", address, keys, () => "[profile team]\nregion = eu-west-1\nendpoint_url = http://127.0.0.1:9000\n"],
    ["an endpoint for S3 in a services section", address, keys, () => "[services team-s3]\ns3 =\n  endpoint_url = http://127.0.0.1:9000\n"],
    ["AWS config files that cannot be read", address, keys, () => {
      throw Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
    }],
    ["a partition whose endpoints are not AWS's commercial, China or GovCloud ones", { ...address, region: "us-iso-east-1" }, keys, noConfig],
    ["an endpoint that is not http or https", { ...address, endpoint: "unix:///run/s3.sock" }, keys, noConfig],
  ];
  for (const [what, a, env, config] of without) {
    it(`none with ${what}: the SDK reads`, () => assert.equal(signedReadsOf(a, env, config), undefined));
  }

  it("the AWS config files are read only when everything else allows signed reads", () => {
    let read = 0;
    signedReadsOf(address, {}, () => (read++, ""));
    assert.equal(read, 0);
    signedReadsOf(address, keys, () => (read++, "[default]\nregion = eu-west-1\n"));
    assert.equal(read, 1);
  });
});

describe("ListObjectsV2 answers and S3 errors, read", () => {
  it("a page cut short: its keys (entities decoded) and the next page's token", () => {
    const xml = `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>team-state</Name><Prefix>team/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
<IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=&amp;x</NextContinuationToken>
<Contents><Key>team/a&amp;b &lt;c&gt; &#233;&#x1F600;.json</Key><LastModified>2026-12-06T16:30:00.000Z</LastModified><ETag>&quot;0f343b0931126a20f133d67c2b018a3b&quot;</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>team/b.json</Key><ETag>"1"</ETag><Owner><ID>x</ID><DisplayName>team</DisplayName></Owner></Contents>
</ListBucketResult>`;
    assert.deepEqual(parseListObjectsPage(xml), { keys: ["team/a&b <c> é😀.json", "team/b.json"], next: "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=&x" });
  });

  it("the last page, and an empty one", () => {
    assert.deepEqual(parseListObjectsPage("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key></Contents></ListBucketResult>"), { keys: ["k"] });
    assert.deepEqual(parseListObjectsPage("<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"), { keys: [] });
  });

  it("an error answer gives S3's code and message; one without a body, its status", () => {
    const denied = s3ReadErrorOf(403, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>1</RequestId></Error>`);
    assert.ok(denied instanceof S3ReadError);
    assert.deepEqual([denied.status, denied.code, denied.name, denied.message], [403, "AccessDenied", "AccessDenied", "Access Denied"]);
    const bare = s3ReadErrorOf(403, "");
    assert.deepEqual([bare.code, bare.message], ["Http403", "the store answered 403"]);
  });
});

describe("signed reads from a store", function () {
  this.timeout(30_000);
  let double: S3Double;
  let reads: SignedReads;
  before(async () => {
    double = await startS3Double({ conditional: true, listPageSize: 2 });
    reads = signedReadsOf({ bucket: double.bucket, region: "us-east-1", endpoint: double.endpoint, forcePathStyle: true }, keys, noConfig)!;
    for (const k of ["team/.pulumi/h/1.json", "team/.pulumi/h/2.json", "team/.pulumi/h/3 & 4.json", "team/.pulumi/h/5.json", "team/.pulumi/h/6.json", "team/other.json"]) {
      double.objects.set(k, { body: `{"key":${JSON.stringify(k)}}`, etag: `"etag of ${k}"` });
    }
  });
  after(async () => double?.stop());

  it("lists every key under a prefix, page after page", async () => {
    const before = double.requests.length;
    assert.deepEqual(await listObjectKeys(reads, "team/.pulumi/h/"), ["team/.pulumi/h/1.json", "team/.pulumi/h/2.json", "team/.pulumi/h/3 & 4.json", "team/.pulumi/h/5.json", "team/.pulumi/h/6.json"]);
    assert.deepEqual(double.requests.slice(before), ["LIST team/.pulumi/h/ 200", "LIST team/.pulumi/h/ 200", "LIST team/.pulumi/h/ 200"]);
    assert.deepEqual(await listObjectKeys(reads, "nothing/"), []);
  });

  it("reads an object's text and ETag, and nothing for one that does not exist", async () => {
    assert.deepEqual(await readObject(reads, "team/.pulumi/h/3 & 4.json"), { text: '{"key":"team/.pulumi/h/3 & 4.json"}', etag: '"etag of team/.pulumi/h/3 & 4.json"' });
    assert.equal(await readObject(reads, "team/.pulumi/h/missing.json"), undefined);
  });
});

describe("a read that fails says why", function () {
  this.timeout(30_000);
  let server: http.Server;
  let answers: { status: number; body: string }[];
  let seen: number;
  let reads: SignedReads;
  before(async () => {
    server = http.createServer((req, res) => {
      const a = answers[Math.min(seen++, answers.length - 1)];
      res.writeHead(a.status, { "content-type": "application/xml" });
      res.end(a.body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    reads = signedReadsOf({ bucket: "team-state", region: "us-east-1", endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, forcePathStyle: true }, keys, noConfig)!;
  });
  beforeEach(() => (seen = 0));
  after(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));

  const error = (code: string, message: string) => `<Error><Code>${code}</Code><Message>${message}</Message></Error>`;

  it("a refusal (403) at once, with the store's message", async () => {
    answers = [{ status: 403, body: error("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.") }];
    await assert.rejects(listObjectKeys(reads, "team/"), { name: "SignatureDoesNotMatch", message: "The request signature we calculated does not match the signature you provided." });
    assert.equal(seen, 1);
  });

  it("a missing bucket on a listing (404 is an answer only for an object)", async () => {
    answers = [{ status: 404, body: error("NoSuchBucket", "The specified bucket does not exist.") }];
    await assert.rejects(listObjectKeys(reads, "team/"), { name: "NoSuchBucket", message: "The specified bucket does not exist." });
  });

  it("a store that is busy (503) is asked again, up to three times in all", async () => {
    answers = [{ status: 503, body: error("SlowDown", "Please reduce your request rate.") }, { status: 200, body: "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>team/a</Key></Contents></ListBucketResult>" }];
    assert.deepEqual(await listObjectKeys(reads, "team/"), ["team/a"]);
    assert.equal(seen, 2);
    seen = 0;
    answers = [{ status: 503, body: error("SlowDown", "Please reduce your request rate.") }];
    await assert.rejects(readObject(reads, "team/a"), { name: "SlowDown", message: "Please reduce your request rate." });
    assert.equal(seen, 3);
  });

  it("an endpoint nobody listens on: Node's error, naming the address", async () => {
    // A port just given up by a listener of our own: nothing listens there now.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const nowhere = signedReadsOf({ bucket: "team-state", region: "us-east-1", endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true }, keys, noConfig)!;
    await assert.rejects(readObject(nowhere, "team/a"), { code: "ECONNREFUSED", message: `connect ECONNREFUSED 127.0.0.1:${port}` });
  });
});
