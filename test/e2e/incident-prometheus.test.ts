import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import { chromiumOrSkip, pngSize, renderedDom, screenshot } from "./chromium";
import { json, pulumiOrSkip, TempProject, tempProject } from "./harness";
import { prometheusOrSkip, prometheusSettings, startPrometheus, TestPrometheus } from "./prometheus";

/** The seeds' rollback criteria as PromQL over what the local target's services export. */
const window = "15s";
const errorRate = `sum(rate(http_requests_total{code=~"5.."}[${window}])) / sum(rate(http_requests_total[${window}]))`;
const p99 = `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[${window}])))`;
const rules = [
  { name: "error rate above 5%", query: errorRate, above: 0.05 },
  { name: "p99 over 2x baseline", query: p99, aboveBaseline: 2 },
];
const watchIntervalMs = 500;

/** One request the load generator made through the traffic switch. */
interface Shot {
  at: number;
  path: string;
  status: number;
  version?: string;
}

/**
 * Traffic through the switch: `workers` clients in a loop over `/`, `/`, `/`, `/checkout` (a quarter of
 * the requests are checkouts), each pausing `paceMs` between requests so two cores are not saturated.
 */
function loadGenerator(endpoint: string, workers = 4, paceMs = 20) {
  const shots: Shot[] = [];
  const paths = ["/", "/", "/", "/checkout"];
  let running = true;
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let i = w; running; i++) {
      const p = paths[i % paths.length];
      try {
        const res = await fetch(`${endpoint}${p}`, { signal: AbortSignal.timeout(10_000) });
        const body = (await res.json().catch(() => ({}))) as { version?: string };
        shots.push({ at: Date.now(), path: p, status: res.status, version: body.version });
      } catch {
        shots.push({ at: Date.now(), path: p, status: 0 });
      }
      await new Promise((r) => setTimeout(r, paceMs));
    }
  });
  return {
    shots,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Asks `ask` until it returns something, at most `timeoutMs`: for states Prometheus reaches after scrapes. */
async function until<T>(what: string, ask: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await ask().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("a scripted incident on real Prometheus: a release that fails checkouts is caught from scraped metrics and rolled back", function () {
  let project: TempProject;
  let prom: TestPrometheus | undefined;
  let promDir: string;
  let load: ReturnType<typeof loadGenerator> | undefined;
  let endpoint: string;
  let watchResult: any;
  let v2DeployedAt: number;
  let baseline: number;
  let page: string;

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    prometheusOrSkip(this);
    // v2 is release 1.2.0: its health and home page are fine (it passes its gate and verification), its checkout fails.
    const v1 = parse(fs.readFileSync(path.join(project.dir, "stacks", "dev", "v1.yaml"), "utf8"));
    project.writeVersion("v2", stringify({ ...v1, version: "v2", description: "checkout (release 1.2.0)", config: { ...v1.config, artifact: "hello-1.2.0", message: "hello from v2" } }));
    assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"])).code, ExitCode.ok);
    const outputs = json(await project.cli(["status", "--stack", "dev", "--json"])).outputs;
    endpoint = outputs.endpoint.value;
    promDir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-prometheus-"));
    prom = await startPrometheus({ dir: promDir, targetFiles: [outputs.metricsTargets.value] });
    const stackFile = path.join(project.dir, "stacks", "dev", "stack.yaml");
    fs.writeFileSync(
      stackFile,
      stringify({
        ...parse(fs.readFileSync(stackFile, "utf8")),
        policy: { triggers: { intervalMs: watchIntervalMs, prometheus: prom.url, recoveryTimeoutMs: 300_000, rules } },
      }),
    );
    load = loadGenerator(endpoint);
  });

  after(async () => {
    await load?.stop();
    await prom?.stop();
    if (promDir) assert.equal(fs.existsSync(promDir), false, "Prometheus left its directory");
    await project?.teardown();
  });

  it("Prometheus scrapes the live slot found through the file written by the stack, labelled with version and slot", async () => {
    const up = await until("the blue slot scraped", async () => {
      const res = await fetch(`${prom!.url}/api/v1/query?query=${encodeURIComponent('up{job="stackpin"}')}`);
      const r = ((await res.json()) as any).data.result as Array<{ metric: Record<string, string>; value: [number, string] }>;
      return r.length === 1 && r[0].value[1] === "1" ? r[0].metric : undefined;
    });
    assert.equal(up.role, "live");
    assert.equal(up.stack, "dev");
    const series = await until("requests counted", async () => {
      const res = await fetch(`${prom!.url}/api/v1/query?query=${encodeURIComponent('http_requests_total{route="/",code="200"} > 0')}`);
      const r = ((await res.json()) as any).data.result as Array<{ metric: Record<string, string> }>;
      return r[0]?.metric;
    });
    assert.deepEqual([series.version, series.slot, series.release], ["v1", "blue", "1.0.0"]);
    assert.ok((await prom!.query('process_resident_memory_bytes{slot="blue"}'))! > 0, "process memory is exported");
  });

  it("records the p99 baseline of v1 under load from real histograms", async () => {
    await until("a p99 from the histogram", () => prom!.query(p99));
    const r = await project.cli(["watch", "--stack", "dev", "--record-baseline", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    baseline = json(r).baselines["p99 over 2x baseline"];
    assert.ok(baseline > 0 && baseline < 1, `baseline ${baseline}`);
    process.stderr.write(`      [figures] p99 baseline of v1 under load: ${(baseline * 1000).toFixed(1)} ms\n`);
  });

  it("deploys v2, whose checkouts fail; watch --auto-rollback fires from the scraped metrics and rolls back to v1", async () => {
    // A watch that only pages (no --auto-rollback) runs across the deploy, as one would in production:
    // it sees the breach as soon as v2 takes traffic, mid-deploy, and exits 15. The rollback is left
    // to a watch started after the deploy, since a rollback cannot start while the deploy holds the stack.
    const observer = project.start(["watch", "--stack", "dev", "--json"]);
    await observer.waitFor(/ok error rate above 5%: 0 <= 0.05/);
    v2DeployedAt = Date.now();
    const d = await project.cli(["deploy", "--stack", "dev", "--version", "v2", "--yes"]);
    assert.equal(d.code, ExitCode.ok, d.stderr);
    // The deploy can return before the load generator's next checkout reaches v2: wait for that request.
    const firstFailure = await until("a checkout failing through the switch while v2 is live", async () => load!.shots.find((s) => s.status === 500 && s.at >= v2DeployedAt));
    const paged = await observer.done;
    assert.equal(paged.code, ExitCode.triggerFired, paged.stderr);
    const pagedAt = json(paged).error.details as { breachedAt: string; firedAt: string };
    // On a loaded machine a latency spike of v1 could page before v2 took traffic: a false alarm, shown, not a figure.
    const pagedOnV2 = Date.parse(pagedAt.breachedAt) >= firstFailure.at;
    if (!pagedOnV2) process.stderr.write(`      [figures] the paging watch fired before v2 took traffic (a false alarm under load): ${json(paged).error.message}\n`);
    const r = await project.cli(["watch", "--stack", "dev", "--auto-rollback", "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    watchResult = json(r);
    assert.deepEqual([watchResult.rollback.from, watchResult.rollback.to], ["v2", "v1"]);
    const fired = watchResult.fired.rules.find((x: any) => x.fired);
    assert.ok(rules.some((x) => x.name === fired.name), fired.name);
    assert.ok(fired.value > fired.threshold, fired.detail);

    // When the scraped metrics first showed each rule's breach, at Prometheus' own resolution of one
    // scrape. The slow failing checkouts can lift the p99 before the error rate: either may name the trigger.
    const from = Math.floor(firstFailure.at / 1000) - 5;
    const to = Math.ceil(Date.now() / 1000);
    const crossed = async (query: string, bound: number) => {
      const res = await fetch(`${prom!.url}/api/v1/query_range?query=${encodeURIComponent(query)}&start=${from}&end=${to}&step=1`);
      const values = (((await res.json()) as any).data.result[0]?.values ?? []) as Array<[number, string]>;
      return values.find(([t, v]) => t * 1000 >= firstFailure.at && Number(v) > bound)?.[0];
    };
    const rateCrossed = await crossed(errorRate, 0.05);
    const p99Crossed = await crossed(p99, 2 * baseline);
    // The rollback can end v2's traffic before the slower signal crosses: the rule that fired must show in
    // the metrics, the other may never have.
    const firedCrossed = fired.name === "error rate above 5%" ? rateCrossed : p99Crossed;
    assert.ok(firedCrossed, `Prometheus never showed the breach of the rule that fired: ${fired.name}`);
    const visible = Math.min(rateCrossed ?? Infinity, p99Crossed ?? Infinity) * 1000;
    const after = (t: number | undefined) => (t ? `${((t * 1000 - firstFailure.at) / 1000).toFixed(1)} s` : "(never)");
    const breachSeen = Date.parse(fired.breachedAt ?? watchResult.fired.at);
    const figures = {
      "first failing request -> breach in the scraped metrics": visible - firstFailure.at,
      ...(pagedOnV2 ? { "first failing request -> breach seen by a watch running across the deploy": Date.parse(pagedAt.breachedAt) - firstFailure.at } : {}),
      "first failing request -> breach seen by the watch started after it": breachSeen - firstFailure.at,
      "breach -> rollback start": watchResult.breachToRollbackMs,
    };
    process.stderr.write(
      `      [figures] detection (scrape ${prometheusSettings.scrapeIntervalS} s, rate window ${window}, watch interval ${watchIntervalMs} ms): ` +
        Object.entries(figures).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join("; ") +
        `; in the metrics the error rate crossed 5% after ${after(rateCrossed)}, the p99 2x its baseline after ${after(p99Crossed)}; fired: ${fired.name} (${fired.detail})\n`,
    );
  });

  it("after the rollback the error rate is back under 5%, and the incident record says so", async () => {
    const record = JSON.parse(fs.readFileSync(watchResult.rollback.incident.json, "utf8"));
    assert.equal(record.recovery.recovered, true, JSON.stringify(record.recovery));
    const rate = record.recovery.rules.find((x: any) => x.name === "error rate above 5%");
    assert.ok(rate.value <= 0.05, `error rate after the rollback: ${rate.value}`);
    assert.ok(record.timeline.some((t: any) => t.step === "signals recovered"), record.timeline.map((t: any) => t.step).join(", "));
    assert.match(fs.readFileSync(watchResult.rollback.incident.markdown, "utf8"), /\| Signals after the rollback \| back within every bound at /);
    assert.ok((await prom!.query(errorRate))! <= 0.05, "Prometheus still shows the error rate above 5%");
    const rolledBackAt = Date.parse(record.endedAt);
    const after = load!.shots.filter((s) => s.at > rolledBackAt + 1000);
    assert.ok(after.length > 0, "no traffic after the rollback");
    assert.deepEqual([...new Set(after.map((s) => `${s.status} ${s.path === "/" ? s.version : s.path}`))].sort(), ["200 v1", "404 /checkout"]);
    process.stderr.write(`      [figures] recovery: signals back within their bounds ${((Date.parse(record.recovery.at) - rolledBackAt) / 1000).toFixed(1)} s after the rollback ended\n`);
  });

  it("incident show --html draws error rate and p99 from Prometheus range queries, their thresholds and the incident's marks; the post-mortem links it", async () => {
    const id = JSON.parse(fs.readFileSync(watchResult.rollback.incident.json, "utf8")).id;
    page = path.join(project.dir, "report", "incident.html");
    const r = await project.cli(["incident", "show", "--stack", "dev", "--id", id, "--html", page, "--json"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const shown = json(r);
    assert.deepEqual(shown.warnings, []);
    assert.deepEqual(
      shown.page.marks.map((m: any) => m.label),
      ["deploy v2", "breach", "trigger", "rollback start", "rollback end", "verification passed", "recovered"],
    );
    const series = Object.fromEntries(shown.page.series.map((s: any) => [s.rule, s]));
    assert.equal(series["error rate above 5%"].threshold, 0.05);
    assert.equal(series["p99 over 2x baseline"].threshold, 2 * baseline);
    for (const s of shown.page.series) assert.ok(s.points >= 10 && !s.missing, `${s.rule}: ${s.points} points ${s.missing ?? ""}`);
    assert.match(fs.readFileSync(page.replace(/\.html$/, ".svg"), "utf8"), /^<svg /);
    const md = fs.readFileSync(watchResult.rollback.incident.markdown, "utf8");
    assert.match(md, /\| Timeline chart \| \[\.\.\/\.\.\/\.\.\/report\/incident\.html\]/);
    assert.match(md, /!\[timeline of the incident[^\]]*\]\(\.\.\/\.\.\/\.\.\/report\/incident\.svg\)/);

    const digest = project.stateDigest();
    const unknown = await project.cli(["incident", "show", "--stack", "dev", "--id", "20261126T000000Z-dev-v9", "--html", page]);
    assert.equal(unknown.code, ExitCode.usage, unknown.stderr);
    assert.match(unknown.stderr, new RegExp(`no incident "20261126T000000Z-dev-v9" for stack dev; known: ${id}`));
    assert.equal((await project.cli(["incident", "show", "--stack", "nope", "--id", id])).code, ExitCode.unknownStack);
    assert.equal(project.stateDigest(), digest, "a refused incident show changed the backend");
  });

  it("the page as a person sees it in headless Chromium: one panel per signal with its line, threshold and every mark", async function () {
    chromiumOrSkip(this);
    const dom = await renderedDom(`file://${page}`);
    const group = (cls: string) => {
      const start = dom.indexOf(`${cls}"`);
      assert.ok(start >= 0, `the page has no ${cls}`);
      return dom.slice(start, dom.indexOf("</g>", start));
    };
    const texts = (html: string) => [...html.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
    for (const [n, rule, threshold] of [[0, "error rate above 5%", "threshold 0.05"], [1, "p99 over 2x baseline", `threshold ${Number((2 * baseline).toPrecision(3))}`]] as const) {
      const line = group(`series_${n}_marks`);
      const points = (line.match(/d="([^"]+)"/)?.[1].match(/[ML]/g) ?? []).length;
      assert.ok(points >= 10, `${rule}: a line of ${points} points`);
      assert.match(line, new RegExp(`aria-label="[^"]*${rule.replace(/[.*+?^${}()|[\]\\%]/g, "\\$&")}`));
      assert.deepEqual(texts(group(`threshold_${n}_layer_1_marks`)), [threshold]);
      assert.deepEqual(texts(group(`timeline_${n}_layer_1_marks`)), ["deploy v2", "breach", "trigger", "rollback start", "rollback end", "verification passed", "recovered"]);
      assert.ok((group(`timeline_${n}_layer_0_marks`).match(/<line /g) ?? []).length === 7, `${rule}: seven vertical marks`);
    }
    const spec = JSON.parse(dom.match(/<script type="application\/json" id="vega-lite-spec">([^<]*)<\/script>/)![1]);
    assert.deepEqual(spec.vconcat.map((p: any) => p.title.text), ["error rate above 5%", "p99 over 2x baseline"]);

    const png = path.join(project.dir, "report", "incident.png");
    await screenshot(`file://${page}`, png, 1000, 1000);
    assert.deepEqual(pngSize(png), { width: 1000, height: 1000 });
    assert.ok(fs.statSync(png).size > 20_000, "the screenshot is nearly empty");
    // `STACKPIN_INCIDENT_SCREENSHOT=docs/incident-page.png` keeps it (the README's picture is one).
    if (process.env.STACKPIN_INCIDENT_SCREENSHOT) fs.copyFileSync(png, process.env.STACKPIN_INCIDENT_SCREENSHOT);
    process.stderr.write(`      [figures] incident page: ${fs.statSync(page).size} bytes, screenshot ${fs.statSync(png).size} bytes (1000x1000)\n`);
  });
});
