import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { AuditLog } from "../../lib/records/audit";
import { gatedChild } from "./gated-child";

const auditModule = path.join(__dirname, "..", "..", "lib", "records", "audit.js");

// The anchor file beside the trail, as the trail keeps it. Passed as both option shapes (`stackName`, and
// the `read`/`write` anchor an older stackpin took) so the same test also runs against that code.
function logAt(file: string): AuditLog {
  const head = file.replace(/\.jsonl$/, "") + ".head";
  const options = {
    stackName: "dev",
    read: async () => (fs.existsSync(head) ? fs.readFileSync(head, "utf8").trim() : undefined),
    write: async (h: string) => fs.writeFileSync(head, `${h}\n`),
  };
  return new AuditLog(file, options as never);
}

const childScript = `
const fs = require("node:fs");
const { AuditLog } = require(process.argv[1]);
const file = process.argv[2];
const head = file.replace(/\\.jsonl$/, "") + ".head";
const log = new AuditLog(file, {
  stackName: "dev",
  read: async () => (fs.existsSync(head) ? fs.readFileSync(head, "utf8").trim() : undefined),
  write: async (h) => fs.writeFileSync(head, h + "\\n"),
});
process.stdout.write("ready\\n");
process.stdin.once("data", async () => {
  for (let i = 0; i < Number(process.argv[3]); i++) {
    await log.append({ stack: "dev", actor: "writer-" + process.pid, op: "deploy", result: "succeeded", detail: "append " + i });
  }
  process.exit(0);
});
`;

/** Starts a process that appends `n` entries once told to go; resolves when it says it is ready. */
function appender(file: string, n: number) {
  return gatedChild("appender", childScript, [auditModule, file, String(n)]);
}

describe("the audit trail under concurrent writers and crashes", function () {
  this.timeout(120_000);
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-audit-"));
    file = path.join(dir, "trail", "dev.jsonl");
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("two processes appending 20 entries each at once leave one unforked chain of 40", async () => {
    const writers = [appender(file, 20), appender(file, 20)];
    await Promise.all(writers.map((w) => w.ready));
    writers.forEach((w) => w.go());
    const codes = await Promise.all(writers.map((w) => w.done));
    assert.deepEqual(codes, [0, 0], writers.map((w) => w.stderr()).join("\n"));
    const log = logAt(file);
    const entries = log.entries();
    const v = await log.verify();
    const actors = new Set(entries.map((e) => e.actor));
    process.stderr.write(`      [figures] audit: 2 processes x 20 appends -> ${entries.length} entries, seqs ${entries.map((e) => e.seq).join(",") === Array.from({ length: 40 }, (_, i) => i + 1).join(",") ? "1..40" : "FORKED"}, ${actors.size} writers, verify ${v.ok ? "ok" : `${v.problems.length} problems, first: ${v.problems[0]}`}\n`);
    assert.equal(entries.length, 40);
    assert.deepEqual(entries.map((e) => e.seq), Array.from({ length: 40 }, (_, i) => i + 1));
    assert.equal(actors.size, 2);
    assert.deepEqual(v.problems, []);
    assert.equal(v.ok, true);
    assert.equal(v.interrupted, undefined);
    assert.ok(!fs.existsSync(`${file}.lock`), "the lock file was left behind");
  });

  it("an append cut short between writing the entry and anchoring it is reported as interrupted, not tampered, and the next append anchors it", async () => {
    const log = logAt(file);
    const entry = { stack: "dev", actor: "e2e", op: "deploy", result: "succeeded" as const };
    await log.append({ ...entry, to: "v1" });
    await log.append({ ...entry, to: "v2" });
    const head = file.replace(/\.jsonl$/, "") + ".head";
    const anchoredBefore = fs.readFileSync(head, "utf8");
    await log.append({ ...entry, to: "v3" });
    // The state a crash between the two writes leaves: the entry is in the trail, the anchor is the old one.
    fs.writeFileSync(head, anchoredBefore);
    let v = await log.verify();
    assert.deepEqual(v.problems, []);
    assert.equal(v.ok, true);
    assert.match(v.interrupted ?? "", /^entry 3 \(deploy at .*\) is chained but was never anchored: an append was interrupted/);

    await log.append({ ...entry, to: "v4" });
    v = await log.verify();
    assert.deepEqual([v.ok, v.entries, v.interrupted], [true, 4, undefined]);
  });

  it("a line cut short while it was written is an interrupted append, which the next append removes", async () => {
    const log = logAt(file);
    const entry = { stack: "dev", actor: "e2e", op: "deploy", result: "succeeded" as const };
    await log.append({ ...entry, to: "v1" });
    fs.appendFileSync(file, '{"seq":2,"at":"2026-11-25T23:00:00.000Z","sta');
    let v = await log.verify();
    assert.deepEqual([v.ok, v.entries], [true, 1]);
    assert.match(v.interrupted ?? "", /the last line is cut short/);
    await log.append({ ...entry, to: "v2" });
    v = await log.verify();
    assert.deepEqual([v.ok, v.entries, v.interrupted], [true, 2, undefined]);
  });

  it("entries cut from the end stay visible after a later append", async () => {
    const log = logAt(file);
    const entry = { stack: "dev", actor: "e2e", op: "deploy", result: "succeeded" as const };
    for (const to of ["v1", "v2", "v3"]) await log.append({ ...entry, to });
    const lines = fs.readFileSync(file, "utf8").trim().split("\n");
    fs.writeFileSync(file, `${lines.slice(0, -1).join("\n")}\n`);
    assert.equal((await log.verify()).ok, false);
    await log.append({ ...entry, to: "v4" });
    const v = await log.verify();
    assert.equal(v.ok, false);
    assert.match(v.problems.join("\n"), /entry 3 was appended when the anchor named 3:[0-9a-f]{64}, which is not an entry before it/);
  });
});
