import { strict as assert } from "node:assert";
import { once } from "node:events";
import { spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { ExitCode } from "../../lib/errors";
import { findPgBin, LocalPostgres, pgCtl, startPostgres } from "../../scripts/local-postgres";
import { CliRun, filesUnder, json, pulumiOrSkip, TempProject, tempProject } from "./harness";
import { commandLines } from "./process-scan";

/**
 * A database whose password is a `secure:` value in stack.yaml, on a PostgreSQL cluster that takes only
 * SCRAM passwords over TCP: deploys, snapshots (pg_basebackup) and a point-in-time restore work, and the
 * password shows up on no process's command line, in no output, and nowhere in the backend.
 */
describe("a database password kept secret: off command lines, out of output, encrypted in the backend", function () {
  let project: TempProject;
  let pg: LocalPostgres;
  let stackFile: string;
  // Made here, so it can only show up where stackpin or Pulumi put it; its `:`, `@`, `/`, `%` and `\` need
  // escaping in a URL and a passfile.
  const password = `pw-${crypto.randomBytes(10).toString("hex")}:@/%\\x`;
  const forms = [password, encodeURIComponent(password), Buffer.from(password).toString("base64")];
  const outputs: CliRun[] = [];
  const seenOnCommandLine: string[] = [];
  let sampler: NodeJS.Timeout | undefined;
  let samples = 0;

  const cli = async (args: string[], input?: string) => {
    const r = await project.cli(args, input === undefined ? {} : { input });
    outputs.push(r);
    return r;
  };
  const holdsPassword = (text: string) => forms.some((f) => text.includes(f));

  before(async function () {
    const pulumi = await pulumiOrSkip(this);
    if (!findPgBin()) {
      if (process.env.STACKPIN_REQUIRE_E2E === "1") throw new Error("PostgreSQL server binaries are missing (apt-get install postgresql)");
      process.stderr.write("\n  DATABASE TESTS SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql\n");
      this.skip();
    }
    project = tempProject(pulumi, { stack: "shop", from: path.join(packageRoot(), "test", "fixtures", "shop") });
    pg = await startPostgres(path.join(project.dir, "pg"), { password });
    stackFile = path.join(project.dir, "stacks", "shop", "stack.yaml");
    fs.appendFileSync(stackFile, stringify({ config: { database: { url: pg.url, archiveDir: pg.archiveDir, pgBin: pg.pgBin } } }));
    // Every process's command line, every 20 ms, for the whole suite (each deploy, snapshot and restore).
    sampler = setInterval(() => {
      samples++;
      for (const c of commandLines()) {
        const line = c.argv.join(" ");
        if (holdsPassword(line)) seenOnCommandLine.push(`${c.pid}: ${line}`);
      }
    }, 20);
  });
  after(async () => {
    if (sampler) clearInterval(sampler);
    if (project) assert.equal((await project.cli(["destroy", "--stack", "shop", "--yes", "--approve-data-loss"])).code, ExitCode.ok);
    pg?.stop();
    await project?.teardown();
  });

  const query = <T>(sql: string, url = pg.url) => pg.query<T>(sql, [], url);

  it("the command-line sampler sees a password put on a command line", async () => {
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 2000)", password], { stdio: "ignore" });
    try {
      const deadline = Date.now() + 2000;
      while (!seenOnCommandLine.some((l) => l.startsWith(`${child.pid}:`)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.ok(seenOnCommandLine.some((l) => l.startsWith(`${child.pid}:`)), "the sampler missed it");
    } finally {
      // Cleared once the probe has exited and been reaped: a sample taken before that would still see it.
      const exited = once(child, "exit");
      child.kill();
      await exited;
      seenOnCommandLine.length = 0;
    }
  });

  it("the cluster refuses a connection without the password (so every connection below used it)", async () => {
    const { Client } = await import("pg");
    const client = new Client({ connectionString: pg.url, connectionTimeoutMillis: 5000 });
    await assert.rejects(client.connect(), /password/);
    await client.end().catch(() => undefined);
  });

  it("secret set writes the password into stack.yaml's database config, encrypted", async () => {
    const r = await cli(["secret", "set", "--stack", "shop", "--stack-file", "--path", "--key", "database.password"], `${password}\n`);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const text = fs.readFileSync(stackFile, "utf8");
    assert.ok(!holdsPassword(text), "stack.yaml holds the password");
    const db = parse(text).config.database;
    assert.match(db.password.secure, /^v1:/);
    assert.equal(db.url, pg.url);
  });

  it("deploys, snapshots before an incompatible version and restores to a time T, with the password", async () => {
    for (const v of ["v1", "v2", "v3"]) {
      const r = await cli(["deploy", "--stack", "shop", "--version", v, "--yes", "--json"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
    let r = await cli(["preview", "--stack", "shop", "--version", "v4"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    r = await cli(["preview", "--stack", "shop", "--version", "v4", "--json"]);
    assert.equal(json(r).database.snapshot, "pre-v4");
    r = await cli(["deploy", "--stack", "shop", "--version", "v4", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.ok(json(r).outputs.databaseSnapshots.value["pre-v4"], "pg_basebackup took the snapshot");

    await query("insert into items (tag) select 'before-' || g from generate_series(1, 50) g");
    const [{ now }] = await query<{ now: Date }>("select clock_timestamp() as now");
    const T = new Date(now.getTime() + 2).toISOString();
    while (!(await query<{ past: boolean }>(`select clock_timestamp() > '${T}'::timestamptz as past`))[0].past);
    await query("insert into items (tag) select 'after-' || g from generate_series(1, 30) g");

    const restoreSamples = samples;
    r = await cli(["restore", "--stack", "shop", "--to-time", T, "--approve-data-loss", "--yes", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.ok(samples - restoreSamples > 20, `command lines were sampled ${samples - restoreSamples} times during the restore`);
    const result = json(r);
    const shownUrl = result.outputs.database.value.url as string;
    assert.match(shownUrl, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/app$/, "the URL shown has no password");
    assert.notEqual(shownUrl, pg.url);
    const counts = await query<{ before: string; after: string }>(
      "select count(*) filter (where tag like 'before-%') as before, count(*) filter (where tag like 'after-%') as after from items",
      shownUrl,
    );
    assert.deepEqual(counts, [{ before: "50", after: "0" }]);
    const health = (await (await fetch(`${result.outputs.endpoint.value}/health`)).json()) as { status: string; database: { port: string } };
    assert.equal(health.status, "ok");
    assert.equal(health.database.port, new URL(shownUrl).port, "the app connects to the restored database with the password");
  });

  it("history and status show no password, text or JSON", async () => {
    for (const args of [["history", "--stack", "shop"], ["history", "--stack", "shop", "--json"], ["status", "--stack", "shop"], ["status", "--stack", "shop", "--json"]]) {
      const r = await cli(args);
      assert.equal(r.code, ExitCode.ok, r.stderr);
    }
  });

  it("a connection failure names the database without its password", async () => {
    // A version with a migration: its preview connects to the database.
    fs.writeFileSync(path.join(project.dir, "stacks", "shop", "migrations", "005_add_memo.up.sql"), "alter table items add column memo text;\n");
    project.writeVersion(
      "v5",
      stringify({
        version: "v5",
        config: { artifact: "hello-1.1.0", message: "shop v5" },
        database: { schema: 5, migration: { name: "005_add_memo", up: "migrations/005_add_memo.up.sql" }, backwardCompatible: true },
      }),
    );
    // The live database is the restored instance.
    const restores = path.join(project.dir, ".stackpin", "local", "shop", "restores");
    const live = fs.readdirSync(restores).map((d) => path.join(restores, d)).filter((d) => fs.existsSync(path.join(d, "postmaster.pid")));
    assert.equal(live.length, 1);
    pgCtl(pg.pgBin, live[0], "stop");
    try {
      const r = await cli(["deploy", "--stack", "shop", "--version", "v5", "--yes", "--json"]);
      assert.equal(r.code, ExitCode.databaseUnavailable, r.stderr);
      assert.match(json(r).error.message, /cannot connect to postgres:\/\/postgres@127\.0\.0\.1:\d+\/app/);
    } finally {
      pgCtl(pg.pgBin, live[0], "start");
    }
  });

  it("the password was on no command line, in no output, and nowhere in the backend or stack files", () => {
    assert.ok(samples > 100, `only ${samples} samples of the command lines`);
    assert.deepEqual(seenOnCommandLine, [], "a process had the password on its command line");
    for (const r of outputs) {
      assert.ok(!holdsPassword(r.stdout), `stdout holds the password:\n${r.stdout}`);
      assert.ok(!holdsPassword(r.stderr), `stderr holds the password:\n${r.stderr}`);
    }
    const backend = path.join(project.stateDir, ".pulumi");
    const files = filesUnder(backend);
    assert.ok(files.some((f) => f.endsWith(".history.json")), "the backend holds update records");
    const leaks = [...files, ...filesUnder(path.join(project.dir, "stacks")), ...filesUnder(path.join(project.dir, ".stackpin", "engine"))].filter((f) =>
      holdsPassword(fs.readFileSync(f, "latin1")),
    );
    assert.deepEqual(leaks, [], "files hold the password");
    // The state holds it, encrypted: the database resources' password inputs are secrets.
    const checkpoint = fs.readFileSync(files.find((f) => /\/stacks\/.*shop\.json$/.test(f))!, "utf8");
    assert.match(checkpoint, /"password":\s*\{\s*"4dabf18193072939515e22adb298388d":\s*"1b47061264138c4ac30d75fd1eb44270",\s*"ciphertext"/);
  });

  it("a password in a plain URL still works, with a warning in the plan, and is masked in what is shown", async () => {
    const kept = fs.readFileSync(stackFile, "utf8");
    try {
      const doc = parse(kept);
      const u = new URL(pg.url);
      u.password = encodeURIComponent(password);
      doc.config.database = { url: u.toString(), archiveDir: pg.archiveDir, pgBin: pg.pgBin };
      fs.writeFileSync(stackFile, stringify(doc));
      for (const args of [["preview", "--stack", "shop", "--version", "v4"], ["preview", "--stack", "shop", "--version", "v4", "--json"]]) {
        const r = await project.cli(args);
        assert.equal(r.code, ExitCode.ok, r.stderr);
        assert.ok(!holdsPassword(r.stdout) && !holdsPassword(r.stderr), `the preview shows the password:\n${r.stdout}\n${r.stderr}`);
        assert.match(r.stdout, /config\.database\.url carries a password in plain text/);
      }
    } finally {
      fs.writeFileSync(stackFile, kept);
    }
  });
});
