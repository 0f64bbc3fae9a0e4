import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import { freePort } from "./harness";

/** Debian's Prometheus (`apt-get install prometheus`); `STACKPIN_PROMETHEUS` names another binary. */
export const prometheusBinary = process.env.STACKPIN_PROMETHEUS ?? "/usr/bin/prometheus";

/**
 * How the test's Prometheus scrapes and evaluates. Scraping every second keeps detection within a few
 * seconds; the rules are evaluated by `stackpin watch` (PromQL instant queries), not by Prometheus, so
 * its own evaluation interval only matters to rule files, of which there are none.
 */
export const prometheusSettings = { scrapeIntervalS: 1, scrapeTimeoutS: 1, evaluationIntervalS: 1 };

/** A running Prometheus started by a test. */
export interface TestPrometheus {
  url: string;
  port: number;
  pid: number;
  /** Runs an instant query; the highest sample, or undefined when empty. */
  query(promql: string): Promise<number | undefined>;
  /** Stops it (SIGTERM, then waits for its exit) and removes its config and data directory. */
  stop(): Promise<void>;
}

/**
 * Prometheus for the tests, or the reason it cannot run: skipped with a banner, unless
 * STACKPIN_REQUIRE_PROM=1 (set by .ci/run), where a missing binary fails the suite.
 */
export function prometheusOrSkip(ctx: Mocha.Context): void {
  if (fs.existsSync(prometheusBinary)) return;
  const reason = `no Prometheus at ${prometheusBinary} (apt-get install prometheus)`;
  if (process.env.STACKPIN_REQUIRE_PROM === "1") throw new Error(`the Prometheus suites need it: ${reason}`);
  const banner = "!".repeat(78);
  process.stderr.write(`\n${banner}\n  PROMETHEUS TESTS SKIPPED: ${reason}.\n${banner}\n`);
  ctx.skip();
}

/**
 * Starts Prometheus as a plain process under `dir` (its config and TSDB there), on a free loopback
 * port, scraping the `file_sd_configs` files `targetFiles` (job `stackpin`), and resolves once its
 * `/-/ready` answers 200. Rejects if it exits first, or is not ready within `readyTimeoutMs`.
 */
export async function startPrometheus(options: { dir: string; targetFiles: string[]; readyTimeoutMs?: number }): Promise<TestPrometheus> {
  const { scrapeIntervalS, scrapeTimeoutS, evaluationIntervalS } = prometheusSettings;
  fs.mkdirSync(options.dir, { recursive: true });
  const configFile = path.join(options.dir, "prometheus.yml");
  fs.writeFileSync(
    configFile,
    stringify({
      global: { scrape_interval: `${scrapeIntervalS}s`, scrape_timeout: `${scrapeTimeoutS}s`, evaluation_interval: `${evaluationIntervalS}s` },
      scrape_configs: [
        // The files are re-read when they change (inotify on their directory); the refresh is a fallback.
        { job_name: "stackpin", file_sd_configs: [{ files: options.targetFiles, refresh_interval: "5s" }] },
      ],
    }),
  );
  const dataDir = path.join(options.dir, "data");
  // The port is free when picked; another process taking it first makes Prometheus exit, so try again.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const log = path.join(options.dir, "prometheus.log");
    const out = fs.openSync(log, "a");
    const child = spawn(
      prometheusBinary,
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${dataDir}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--storage.tsdb.retention.time=1d",
        // Debian's build otherwise looks for consoles under /etc/prometheus.
        `--web.console.templates=${options.dir}`,
        `--web.console.libraries=${options.dir}`,
      ],
      { cwd: options.dir, stdio: ["ignore", out, out] },
    );
    fs.closeSync(out);
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitReady(child, url, options.readyTimeoutMs ?? 120_000, log);
    } catch (err) {
      await stopChild(child);
      if (attempt < 3 && /address already in use/.test(fs.readFileSync(log, "utf8"))) continue;
      fs.rmSync(options.dir, { recursive: true, force: true });
      throw err;
    }
    return {
      url,
      port,
      pid: child.pid!,
      query: (promql) => instantQuery(url, promql),
      async stop() {
        await stopChild(child);
        fs.rmSync(options.dir, { recursive: true, force: true });
      },
    };
  }
}

/** Asks `/-/ready` until it answers 200 (Prometheus says 503 while it replays its WAL). */
async function waitReady(child: ChildProcess, url: string, timeoutMs: number, log: string): Promise<void> {
  let exited: string | undefined;
  child.once("exit", (code, signal) => (exited = `exited (${code ?? signal})`));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) throw new Error(`prometheus ${exited} before it was ready:\n${fs.readFileSync(log, "utf8").split("\n").slice(-8).join("\n")}`);
    if (Date.now() > deadline) throw new Error(`prometheus was not ready within ${timeoutMs} ms:\n${fs.readFileSync(log, "utf8").split("\n").slice(-8).join("\n")}`);
    try {
      const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    // Between two questions: a pause in asking, not a wait standing in for the event.
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

/** A PromQL instant query against `url`; the highest sample, or undefined when the result is empty. */
export async function instantQuery(url: string, promql: string): Promise<number | undefined> {
  const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { status: string; error?: string; data: { resultType: string; result: Array<{ value: [number, string] }> } };
  if (body.status !== "success") throw new Error(`query ${promql} failed: ${body.error}`);
  const values = body.data.result.map((r) => Number(r.value[1])).filter((v) => !Number.isNaN(v));
  return values.length ? Math.max(...values) : undefined;
}
