import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { thisPlace } from "../../lib/engine/interruption";
import { FileRecordStore, maxVerifications, withFileLock } from "../../lib/records/ledger";
import { gatedChild } from "./gated-child";

const ledgerModule = path.join(__dirname, "..", "..", "lib", "records", "ledger.js");

const childScript = `
const { FileRecordStore } = require(process.argv[1]);
const store = new FileRecordStore(process.argv[2], "dev");
process.stdout.write("ready\\n");
process.stdin.once("data", async () => {
  for (let i = 0; i < Number(process.argv[3]); i++) {
    await store.update((r) => { r.baselines["writer-" + process.pid + "-" + i] = i; });
  }
  process.exit(0);
});
`;

function writer(file: string, n: number) {
  return gatedChild("writer", childScript, [ledgerModule, file, String(n)]);
}

describe("stackpin's records document (freeze, verifications, baselines)", function () {
  this.timeout(120_000);
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-ledger-"));
    file = path.join(dir, ".stackpin", "proj", "dev.json");
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("two processes writing 20 records each at once lose none of them", async () => {
    const writers = [writer(file, 20), writer(file, 20)];
    await Promise.all(writers.map((w) => w.ready));
    writers.forEach((w) => w.go());
    assert.deepEqual(await Promise.all(writers.map((w) => w.done)), [0, 0], writers.map((w) => w.stderr()).join("\n"));
    const records = await new FileRecordStore(file, "dev").read();
    const kept = Object.keys(records.baselines).length;
    process.stderr.write(`      [figures] records: 2 processes x 20 writes -> ${kept} records kept, generation ${records.generation}\n`);
    assert.equal(kept, 40);
    assert.equal(records.generation, 40);
    assert.ok(!fs.existsSync(`${file}.lock`), "the lock file was left behind");
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ["dev.json"], "temp files were left behind");
  });

  it("breaks a lock whose holder is gone, and waits for one whose holder runs", async () => {
    const gone = spawn(process.execPath, ["-e", ""]);
    const pid = gone.pid!;
    await new Promise((r) => gone.once("exit", r));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(`${file}.lock`, JSON.stringify({ ...thisPlace(), pid, since: new Date().toISOString(), token: "x" }));
    await new FileRecordStore(file, "dev").update((r) => void (r.baselines.a = 1));
    assert.equal((await new FileRecordStore(file, "dev").read()).baselines.a, 1);

    const order: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const first = withFileLock(`${file}.lock`, "dev", async () => {
      entered();
      await held;
      order.push("first done");
    });
    await inside;
    const second = new FileRecordStore(file, "dev").update((r) => {
      order.push("second writes");
      r.baselines.b = 2;
    });
    // The second writer is still waiting: the holder (this process) runs. Let it go.
    order.push("released");
    release();
    await Promise.all([first, second]);
    assert.deepEqual(order, ["released", "first done", "second writes"]);
  });

  it(`keeps the newest ${maxVerifications} verification outcomes`, async () => {
    const store = new FileRecordStore(file, "dev");
    for (let i = 0; i < maxVerifications + 20; i++) {
      await store.update((r) => void (r.verifications[`id${i}`] = { outcome: "passed", at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString() }));
    }
    const kept = Object.keys((await store.read()).verifications);
    assert.equal(kept.length, maxVerifications);
    assert.ok(!kept.includes("id19") && kept.includes("id20") && kept.includes(`id${maxVerifications + 19}`));
  });
});
