import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { exportedOf, readBackendCheckpoint } from "../../lib/engine/backend-checkpoint";

describe("a stack's checkpoint read from a file:// backend's own file", () => {
  let root: string;
  const stacks = () => path.join(root, ".pulumi", "stacks", "shop");
  const latest = {
    manifest: { time: "2026-12-06T10:40:40Z" },
    resources: [{ urn: "urn:pulumi:dev::shop::pulumi:pulumi:Stack::shop-dev", type: "pulumi:pulumi:Stack", outputs: { token: { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", ciphertext: "v1:abc" } } }],
    pending_operations: [{ type: "creating", resource: { urn: "urn:pulumi:dev::shop::x:y::z" } }],
  };
  const stored = JSON.stringify({ version: 3, checkpoint: { stack: "organization/shop/dev", latest } });
  const write = (name: string, body: string | Buffer) => fs.writeFileSync(path.join(stacks(), name), body);

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-checkpoint-"));
    fs.mkdirSync(stacks(), { recursive: true });
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it("gives what `stack export` gives: the newest deployment, secrets still ciphertext", async () => {
    write("dev.json", stored);
    write("dev.json.attrs", JSON.stringify({ md5: "x" }));
    write("dev.json.bak", "{}");
    assert.deepEqual(await readBackendCheckpoint(`file://${root}`, "shop", "dev"), { version: 3, deployment: latest });
  });

  it("reads a gzip-compressed checkpoint when it is the only form stored", async () => {
    write("dev.json.gz", zlib.gzipSync(stored));
    assert.deepEqual(await readBackendCheckpoint(`file://${root}`, "shop", "dev"), { version: 3, deployment: latest });
  });

  it("leaves to the CLI what it would not answer the same: no stack, two forms, zstd, a broken attributes file, another version, other backends", async () => {
    const read = () => readBackendCheckpoint(`file://${root}`, "shop", "dev");
    assert.equal(await read(), undefined, "no checkpoint: the CLI says there is no such stack");
    write("dev.json", stored);
    write("dev.json.gz", zlib.gzipSync(stored));
    assert.equal(await read(), undefined, "two forms: Pulumi reads the newest");
    fs.rmSync(path.join(stacks(), "dev.json"));
    fs.rmSync(path.join(stacks(), "dev.json.gz"));
    write("dev.json.zst", "zstd");
    assert.equal(await read(), undefined, "zstd");
    fs.rmSync(path.join(stacks(), "dev.json.zst"));
    write("dev.json", stored);
    write("dev.json.attrs", "");
    assert.equal(await read(), undefined, "an attributes file a killed write left empty: the CLI's error starts the repair");
    fs.rmSync(path.join(stacks(), "dev.json.attrs"));
    write("dev.json", JSON.stringify({ version: 4, features: ["x"], checkpoint: { latest } }));
    assert.equal(await read(), undefined, "a checkpoint version this reader does not know");
    write("dev.json", "{\"version\": 3, \"checkpoint\": {");
    assert.equal(await read(), undefined, "not JSON");
    assert.equal(await readBackendCheckpoint("gs://bucket", "shop", "dev"), undefined);
  });

  it("a checkpoint without a deployment yet is an empty one", () => {
    assert.deepEqual(exportedOf(Buffer.from(JSON.stringify({ version: 3, checkpoint: { stack: "organization/shop/dev", latest: null } }))), { version: 3, deployment: {} });
  });
});
