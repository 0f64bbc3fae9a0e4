import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import type { LocalPostgres } from "../../scripts/local-postgres";
import { CliRun, json, TempProject } from "./harness";
import { pointShopAt, shopWithPostgres } from "./shop-postgres";
import { webhookReceiver } from "./webhook-receiver";

const deploy = (v: string) => ["deploy", "--stack", "shop", "--version", v, "--yes", "--json"];
const check = (...extra: string[]) => ["check", "--stack", "shop", "--json", ...extra];

/** The legs of one way back in a `check --json` answer (or in its error's details when not ready). */
function legsOf(r: CliRun, version: string): Record<string, { ok: boolean | null; detail: string }> {
  const doc = json(r);
  const report = r.code === ExitCode.ok ? doc : doc.error.details;
  const target = report.targets.find((t: { version: string }) => t.version === version);
  assert.ok(target, `no way back to ${version} in ${JSON.stringify(report.targets.map((t: { version: string }) => t.version))}`);
  return Object.fromEntries(target.legs.map((l: { leg: string; ok: boolean | null; detail: string }) => [l.leg, { ok: l.ok ?? null, detail: l.detail }]));
}

/** The legs that do not hold, by name. */
const broken = (legs: ReturnType<typeof legsOf>) => Object.keys(legs).filter((k) => legs[k].ok === false);

describe("check: whether each way back works now, leg by leg, on a real PostgreSQL and the real engine", function () {
  let project: TempProject;
  let pg: LocalPostgres;

  before(async function () {
    ({ project, pg } = await shopWithPostgres(this));
    pointShopAt(project, pg);
    // v3 drops a column (a down exists), v4 makes tags required (no down): back to v3 is a restore from pre-v4.
    for (const v of ["v1", "v2", "v3", "v4"]) {
      const r = await project.cli(deploy(v));
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
  });
  after(async () => {
    if (project) assert.equal((await project.cli(["destroy", "--stack", "shop", "--yes", "--approve-data-loss"])).code, ExitCode.ok);
    pg?.stop();
    await project?.teardown();
  });

  it("a stack whose way back holds: every leg passes, exit 0, with the restore window; status shows the line", async () => {
    const started = Date.now();
    const r = await project.cli(check());
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const report = json(r);
    assert.deepEqual(report.targets.map((t: { version: string; as: string[] }) => [t.version, t.as]), [["v3", ["last good", "previous"]]]);
    const legs = legsOf(r, "v3");
    assert.deepEqual(broken(legs), []);
    assert.deepEqual(Object.keys(legs), ["config", "secrets", "artifacts", "database", "generations", "plugins", "approvals", "freeze", "engine"]);
    assert.match(legs.database.detail, /restore from pre-v4 .* the base backup is there and the WAL archive is continuous to now/);
    assert.match(legs.artifacts.detail, /artifact hello-1\.1\.0 is at /);
    assert.ok(report.targets[0].window, "the restore window is in the answer");
    const status = await project.cli(["status", "--stack", "shop"]);
    assert.match(status.stdout, /ways back \(checked \d+ s ago at revision 4\):\n\s+rollback to v3: ready — restore window \d+ (s|min)/);
    process.stderr.write(`      [figures] check of one way back (a restore path): ${((Date.now() - started) / 1000).toFixed(1)} s for the command, ${(report.targets[0].durationMs / 1000).toFixed(1)} s for the way back\n`);
  });

  /** The WAL segments in the archive, oldest first. */
  const archived = () => fs.readdirSync(pg.archiveDir).filter((f) => /^[0-9A-F]{24}$/.test(f)).sort();
  /**
   * Two more segments archived (after pre-v4's base backup): writes, each closed by a segment switch; then
   * the older of the two is moved out of the archive, leaving a gap before the newer. Returns how to put it back.
   */
  async function walGap(): Promise<{ gone: string; putBack: () => void }> {
    const before = archived().length;
    while (archived().length < before + 2) {
      await pg.query("insert into items (tag) select 'wal-' || g from generate_series(1, 100) g");
      await pg.query("select pg_switch_wal()");
      // The archiver copies the closed segment: wait for it a little before closing the next (a switch
      // with nothing new to close does nothing, so the loop writes and switches again).
      const n = archived().length;
      for (let i = 0; i < 40 && archived().length === n; i++) await new Promise((res) => setTimeout(res, 50));
    }
    const all = archived();
    const gone = all[all.length - 2];
    const moved = path.join(path.dirname(pg.archiveDir), `${gone}.moved`);
    fs.renameSync(path.join(pg.archiveDir, gone), moved);
    return { gone, putBack: () => fs.renameSync(moved, path.join(pg.archiveDir, gone)) };
  }

  it("a WAL segment removed from the archive: exit 19 naming the database leg and the segment, status shows it; put back, ready again", async () => {
    const { gone, putBack } = await walGap();
    try {
      const digest = project.stateDigest();
      const r = await project.cli(check());
      assert.equal(r.code, ExitCode.notReady, r.stderr);
      const legs = legsOf(r, "v3");
      assert.deepEqual(broken(legs), ["database"]);
      assert.match(legs.database.detail, new RegExp(`WAL segment ${gone} is in no WAL archive .* cannot replay past the gap`));
      assert.match(json(r).error.message, /rollback to v3: NOT READY — database: WAL segment/);
      assert.match(r.stderr, /error: the way back is not ready on shop/);
      const status = await project.cli(["status", "--stack", "shop"]);
      assert.match(status.stdout, new RegExp(`! rollback to v3: NOT READY — database: WAL segment ${gone}`));
      // Only stackpin's records changed (the answer status shows): no resource, no history entry.
      assert.notEqual(project.stateDigest(), digest);
      assert.equal(json(await project.cli(["history", "--stack", "shop", "--json"])).length, 4);
    } finally {
      putBack();
    }
    const again = await project.cli(check());
    assert.equal(again.code, ExitCode.ok, again.stderr);
  });

  it("watch: the WAL archive broken while it runs tells the webhook from the next check, and again when repaired", async () => {
    const hook = await webhookReceiver();
    const stackFile = path.join(project.dir, "stacks", "shop", "stack.yaml");
    const original = fs.readFileSync(stackFile, "utf8");
    const intervalMs = 2000;
    fs.writeFileSync(
      stackFile,
      stringify({
        ...parse(original),
        policy: {
          triggers: { intervalMs: 500, rules: [{ name: "3 failed health checks", healthFailures: 3 }] },
          readiness: { intervalMs },
          notify: { webhooks: [hook.url], timeoutMs: 2000 },
        },
      }),
    );
    const watch = project.start(["watch", "--stack", "shop", "--json"]);
    try {
      await watch.waitFor(/ways back \(check 1\): rollback to v3: ready/, "stderr");
      const gap = await walGap();
      const brokenAt = Date.now();
      // The newest check that had started when the archive broke: the one after it sees the gap.
      const before = Math.max(...[...(await watch.waitFor(/ways back \(check \d+\)/, "stderr")).matchAll(/ways back \(check (\d+)\)/g)].map((m) => Number(m[1])));
      const told = await watch.waitFor(/the way back to v3 broke: database: WAL segment \w+ is in no WAL archive[^\n]*\(told 1 of 1 webhooks\)/, "stderr");
      const byCheck = Number([...told.slice(0, told.lastIndexOf("the way back to v3 broke")).matchAll(/ways back \(check (\d+)\)/g)].pop()![1]);
      assert.ok(byCheck <= before + 2, `told by check ${byCheck}; the archive broke after check ${before} had started`);
      const broken = hook.received.find((b) => b.stackpin?.event === "readiness.broken");
      assert.ok(broken, JSON.stringify(hook.received));
      assert.equal(broken.stackpin.to, "v3");
      assert.equal(broken.stackpin.leg, "database");
      assert.match(broken.text, new RegExp(`^WAY BACK BROKEN: shop: rollback to v3 would not work now — database: WAL segment ${gap.gone}`));
      const latency = hook.at[hook.received.indexOf(broken)] - brokenAt;
      gap.putBack();
      const repairedAt = Date.now();
      await watch.waitFor(/the way back to v3 works again: rollback to v3: ready/, "stderr");
      const restored = hook.received.find((b) => b.stackpin?.event === "readiness.restored");
      assert.ok(restored, JSON.stringify(hook.received));
      assert.match(restored.text, /^Way back restored: shop: rollback to v3: ready — restore window/);
      process.stderr.write(
        `      [figures] watch readiness (interval ${intervalMs / 1000} s): archive broken -> webhook ${(latency / 1000).toFixed(1)} s (check ${byCheck}, after check ${before} had started); repaired -> webhook ${((hook.at[hook.received.indexOf(restored)] - repairedAt) / 1000).toFixed(1)} s\n`,
      );
    } finally {
      process.kill(watch.pid, "SIGINT");
      const r = await watch.done;
      hook.close();
      fs.writeFileSync(stackFile, original);
      assert.equal(r.code, ExitCode.ok, r.stderr);
      assert.deepEqual(json(r).readiness.changes.map((c: { change: string }) => c.change), ["broken", "restored"]);
    }
  });

  it("a wrong passphrase: exit 19 naming the secrets leg, the preview stopped there, status shows it", async () => {
    const r = await project.cli(check(), { env: { PULUMI_CONFIG_PASSPHRASE: "not-the-passphrase" } });
    assert.equal(r.code, ExitCode.notReady, r.stderr);
    const legs = legsOf(r, "v3");
    assert.deepEqual(broken(legs), ["secrets"]);
    assert.match(legs.secrets.detail, /passphrase/i);
    assert.equal(legs.engine.ok, null, "the engine's preview is not claimed to pass");
    const status = await project.cli(["status", "--stack", "shop"]);
    assert.match(status.stdout, /! rollback to v3: NOT READY — secrets: [^\n]*passphrase/i);
  });

  it("a snapshot removed by an approved snapshot rm: exit 19 naming the database leg, status shows it", async () => {
    const rm = await project.cli(["snapshot", "rm", "pre-v4", "--stack", "shop", "--approve-data-loss", "--yes", "--json"]);
    assert.equal(rm.code, ExitCode.ok, rm.stderr);
    const r = await project.cli(check());
    assert.equal(r.code, ExitCode.notReady, r.stderr);
    const legs = legsOf(r, "v3");
    assert.deepEqual(broken(legs), ["database"]);
    assert.match(legs.database.detail, /no snapshot pre-v4 to restore from/);
    const status = await project.cli(["status", "--stack", "shop"]);
    assert.match(status.stdout, /! rollback to v3: NOT READY — database: .*no snapshot pre-v4 to restore from/);
  });

  it("a release artifact gone from the artifact store: exit 19 naming the artifacts leg, status shows it", async () => {
    // A release whose artifact is a copy made for this test, then a newer release on a kept artifact.
    const artifacts = path.join(packageRoot(), "programs", "local", "artifacts");
    const name = `hello-check-${process.pid}`;
    const artifact = path.join(artifacts, `${name}.js`);
    fs.copyFileSync(path.join(artifacts, "hello-1.1.0.js"), artifact);
    try {
      const v4 = parse(fs.readFileSync(path.join(project.dir, "stacks", "shop", "v4.yaml"), "utf8"));
      project.writeVersion("v5", stringify({ ...v4, version: "v5", description: "on the copied artifact", config: { ...v4.config, artifact: name, message: "shop v5" } }));
      project.writeVersion("v6", stringify({ ...v4, version: "v6", description: "back on a kept artifact", config: { ...v4.config, message: "shop v6" } }));
      for (const v of ["v5", "v6"]) assert.equal((await project.cli(deploy(v))).code, ExitCode.ok);
      assert.equal((await project.cli(check())).code, ExitCode.ok);
      fs.rmSync(artifact);
      const r = await project.cli(check());
      assert.equal(r.code, ExitCode.notReady, r.stderr);
      const legs = legsOf(r, "v5");
      assert.deepEqual(broken(legs), ["artifacts"]);
      assert.match(legs.artifacts.detail, new RegExp(`artifact ${name} is missing`));
      const status = await project.cli(["status", "--stack", "shop"]);
      assert.match(status.stdout, new RegExp(`! rollback to v5: NOT READY — artifacts: artifact ${name} is missing`));
    } finally {
      fs.rmSync(artifact, { force: true });
    }
  });

  it("check --all: every version applied before, each with its own answer; --to and --all together is a usage error", async () => {
    const started = Date.now();
    const r = await project.cli(check("--all"));
    assert.equal(r.code, ExitCode.notReady, r.stderr);
    const report = json(r).error.details;
    assert.deepEqual(report.targets.map((t: { version: string }) => t.version), ["v5", "v4", "v3", "v2", "v1"]);
    const ready = Object.fromEntries(report.targets.map((t: { version: string; ready: boolean }) => [t.version, t.ready]));
    assert.equal(ready.v4, true, "v4 runs with the live schema: nothing in its way");
    assert.equal(ready.v5, false, "v5's artifact is gone");
    process.stderr.write(
      `      [figures] check --all: ${report.targets.length} ways back in ${((Date.now() - started) / 1000).toFixed(1)} s (${report.targets.map((t: { version: string; ready: boolean; durationMs: number }) => `${t.version} ${t.ready ? "ready" : "not ready"} ${(t.durationMs / 1000).toFixed(1)} s`).join(", ")})\n`,
    );
    const usage = await project.cli(["check", "--stack", "shop", "--to", "v1", "--all"]);
    assert.equal(usage.code, ExitCode.usage, usage.stderr);
  });
});
