/**
 * `npm run bench:rollback`: what stackpin's operations cost beside what the engine costs,
 * printed, not asserted. Every stackpin figure is the real CLI (`node dist/lib/cli/main.js ... --yes`)
 * on a temp copy of `stacks/dev` (local target, file:// backend), run with `STACKPIN_DEBUG=timing` so
 * each run also reports its Pulumi CLI calls; beside it, in the same run, the **engine floor**: the same
 * stack's update with the same config through the Automation API and nothing around it (no history or
 * tag reads, no tag or records writes, no verification).
 *
 * BENCH_ROUNDS (default 3): rounds of the main table, printed as median (min-max).
 * BENCH_SCALE=quick|full (default quick): history scaling to 10 and 100 entries, or 10, 100 and 500.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigMap, LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { parse, stringify } from "yaml";
import { locatePulumi, packageRoot, PulumiCli, writeDynamicProviderPlugin } from "../lib/engine/pulumi-cli";
import { builtinPrograms } from "../programs";
import { TempProject, tempProject } from "../test/e2e/harness";

const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const scale = process.env.BENCH_SCALE === "full" ? "full" : "quick";
const historyPoints = scale === "full" ? [10, 100, 500] : [10, 100];
const keyPoints = [10, 100, 1000];
const cliEntry = path.join(packageRoot(), "dist", "lib", "cli", "main.js");

/** One timed run: wall time, the CLI calls it reported, its peak RSS, and when the target version first answered. */
interface Sample {
  ms: number;
  calls: { sub: string; ms: number }[];
  /** The CLI's own (node) peak RSS, from its `[timing] total` line. */
  nodeRssMb?: number;
  /** The largest single process of the run's tree (node or a Pulumi CLI it waited for), from /usr/bin/time. */
  treeRssMb?: number;
  /** From the command's start to the first request through the traffic switch answered by the target version. */
  firstAnswerMs?: number;
}

const results = new Map<string, Sample[]>();
const keep = (name: string, s: Sample) => (results.get(name) ?? results.set(name, []).get(name)!).push(s);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sec = (ms: number) => (ms / 1000).toFixed(2);
const spread = (xs: number[]) => (xs.length ? `${sec(median(xs))} s (${sec(Math.min(...xs))}-${sec(Math.max(...xs))})` : "-");

/**
 * Polls the stack's public endpoint (through the traffic switch) until an answer names `version`;
 * resolves with the time since `since`. Each answer is the event; the short pause only spaces requests.
 */
function firstAnswer(endpoint: string, version: string, since: number): { done: Promise<number | undefined>; stop(): void } {
  let running = true;
  const done = (async () => {
    while (running) {
      try {
        const r = await fetch(`${endpoint}/health`);
        const body = (await r.json()) as { version?: string };
        if (r.status === 200 && body.version === version) return performance.now() - since;
      } catch {
        // not answering right now (a slot restarting): keep asking
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return undefined;
  })();
  return { done, stop: () => (running = false) };
}

/** Runs `stackpin <args>` in the project under /usr/bin/time, with STACKPIN_DEBUG=timing. */
async function stackpin(project: TempProject, args: string[], watch?: { endpoint: string; version: string }): Promise<Sample & { stdout: string }> {
  const rssFile = path.join(project.dir, ".bench-rss");
  const env = Object.fromEntries(Object.entries({ ...project.env, STACKPIN_DEBUG: "timing" }).filter(([, v]) => v !== undefined)) as Record<string, string>;
  const started = performance.now();
  const poll = watch ? firstAnswer(watch.endpoint, watch.version, started) : undefined;
  const child = spawn("/usr/bin/time", ["-f", "%M", "-o", rssFile, process.execPath, cliEntry, ...args], { cwd: project.dir, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const code = await new Promise<number>((resolve, reject) => (child.on("error", reject), child.on("close", (c) => resolve(c ?? -1))));
  const ms = performance.now() - started;
  poll?.stop();
  const firstAnswerMs = await poll?.done;
  if (code !== 0) throw new Error(`stackpin ${args.join(" ")} exited ${code}:\n${stderr}`);
  const calls = [...stderr.matchAll(/^\[timing\] pulumi (.+): (\d+) ms$/gm)].map((m) => ({ sub: m[1], ms: Number(m[2]) }));
  const nodeRss = /peak RSS (\d+) MB/.exec(stderr)?.[1];
  const tree = fs.existsSync(rssFile) ? Number(fs.readFileSync(rssFile, "utf8").trim().split("\n").pop()) : NaN;
  fs.rmSync(rssFile, { force: true });
  return { ms, calls, stdout, nodeRssMb: nodeRss ? Number(nodeRss) : undefined, treeRssMb: Number.isFinite(tree) ? Math.round(tree / 1024) : undefined, firstAnswerMs };
}

/** The engine floor: a workspace on the project's backend and program, driven directly. */
class Floor {
  private constructor(
    private readonly workspace: LocalWorkspace,
    private readonly stack: Stack,
  ) {}

  static async open(project: TempProject, pulumi: PulumiCli): Promise<Floor> {
    const stackDir = path.join(project.dir, "stacks", "dev");
    const settings = parse(fs.readFileSync(path.join(stackDir, "stack.yaml"), "utf8")) as { project: string; encryptionsalt: string };
    const pluginDir = writeDynamicProviderPlugin(path.join(project.dir, ".stackpin", "engine", "bin"));
    const workDir = path.join(project.dir, ".bench-floor");
    fs.mkdirSync(workDir, { recursive: true });
    const program = builtinPrograms.local({ stackName: "dev", stateDir: path.join(project.dir, ".stackpin", "local", "dev") });
    const workspace = await LocalWorkspace.create({
      workDir,
      program,
      pulumiCommand: pulumi.command,
      pulumiHome: project.env.PULUMI_HOME,
      envVars: {
        PATH: `${pluginDir}${path.delimiter}${pulumi.root}${path.delimiter}${process.env.PATH ?? ""}`,
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_SKIP_CONFIRMATIONS: "true",
        PULUMI_CONFIG_PASSPHRASE: project.env.PULUMI_CONFIG_PASSPHRASE!,
      },
      projectSettings: { name: settings.project, runtime: "nodejs", backend: { url: `file://${project.stateDir}` } },
      stackSettings: { dev: { encryptionSalt: settings.encryptionsalt } },
    });
    return new Floor(workspace, await Stack.select("dev", workspace));
  }

  /** The config the newest update applied (secrets decrypted, to be re-encrypted as secrets): what stackpin set. */
  async appliedConfig(): Promise<ConfigMap> {
    const [newest] = await this.stack.history(1, 1, true);
    return Object.fromEntries(Object.entries(newest.config).map(([k, v]) => [k, { value: v.value, secret: v.secret }]));
  }

  /** Replaces the workspace's config with `config` (untimed: it is setup, not the engine's work). */
  async use(config: ConfigMap): Promise<void> {
    const settings = await this.workspace.stackSettings("dev");
    await this.workspace.saveStackSettings("dev", { ...settings, config: {} });
    await this.workspace.setAllConfig("dev", config);
  }

  async up(watch?: { endpoint: string; version: string }): Promise<Sample> {
    const started = performance.now();
    const poll = watch ? firstAnswer(watch.endpoint, watch.version, started) : undefined;
    await this.stack.up({ message: "bench: engine floor" });
    const ms = performance.now() - started;
    poll?.stop();
    return { ms, calls: [], firstAnswerMs: await poll?.done };
  }

  async timed(fn: () => Promise<unknown>): Promise<Sample> {
    const started = performance.now();
    await fn();
    return { ms: performance.now() - started, calls: [] };
  }

  preview = () => this.timed(() => this.stack.preview());
  history = () => this.timed(() => this.stack.history(undefined, undefined, false));
  outputs = () => this.timed(() => this.stack.outputs());

  async endpoint(): Promise<string> {
    return (await this.stack.outputs()).endpoint.value as string;
  }
}

/** Per subcommand: calls per run and mean ms per run, over the samples. */
function breakdown(samples: Sample[]): string {
  const by = new Map<string, { n: number; ms: number }>();
  for (const s of samples) {
    for (const c of s.calls) {
      const key = c.sub.startsWith("stack init") ? "stack init" : c.sub;
      const b = by.get(key) ?? { n: 0, ms: 0 };
      b.n += 1;
      b.ms += c.ms;
      by.set(key, b);
    }
  }
  const k = samples.length;
  const total = [...by.values()].reduce((s, b) => s + b.ms, 0) / k;
  const n = [...by.values()].reduce((s, b) => s + b.n, 0) / k;
  const parts = [...by]
    .sort((a, b) => b[1].ms - a[1].ms)
    .map(([sub, b]) => `${sub} ${+(b.n / k).toFixed(1)}x ${Math.round(b.ms / k)} ms`);
  return `${+n.toFixed(1)} calls, ${Math.round(total)} ms in the CLI: ${parts.join(", ")}`;
}

const rss = (samples: Sample[]) => {
  const node = samples.map((s) => s.nodeRssMb).filter((x): x is number => x !== undefined);
  const tree = samples.map((s) => s.treeRssMb).filter((x): x is number => x !== undefined);
  return node.length ? `${Math.max(...node)} MB node, ${Math.max(...tree)} MB largest process` : "-";
};

function table(rows: [string, string, string | undefined][]): void {
  console.log(`| what | stackpin | engine floor | ratio | to first answer by the target (stackpin / floor) | peak RSS |`);
  console.log(`|---|---|---|---|---|---|`);
  for (const [label, ours, floor] of rows) {
    const a = results.get(ours) ?? [];
    const b = floor ? (results.get(floor) ?? []) : [];
    const ratio = b.length ? `${(median(a.map((s) => s.ms)) / median(b.map((s) => s.ms))).toFixed(1)}x` : "-";
    const fa = a.map((s) => s.firstAnswerMs).filter((x): x is number => x !== undefined);
    const fb = b.map((s) => s.firstAnswerMs).filter((x): x is number => x !== undefined);
    const first = fa.length || fb.length ? `${fa.length ? sec(median(fa)) : "-"} s / ${fb.length ? sec(median(fb)) : "-"} s` : "";
    console.log(`| ${label} | ${spread(a.map((s) => s.ms))} | ${b.length ? spread(b.map((s) => s.ms)) : "-"} | ${ratio} | ${first} | ${rss(a)} |`);
  }
}

async function mainTable(pulumi: PulumiCli): Promise<void> {
  const project = tempProject(pulumi);
  try {
    const s = ["--stack", "dev"];
    await stackpin(project, ["deploy", ...s, "--version", "v1", "--yes"]);
    const floor = await Floor.open(project, pulumi);
    const endpoint = await floor.endpoint();
    for (let r = 1; r <= rounds; r++) {
      process.stderr.write(`round ${r}/${rounds}\n`);
      // stackpin: deploy v2, read, preview the way back, switch back to v1, then roll back to the live v1.
      keep("deploy", await stackpin(project, ["deploy", ...s, "--version", "v2", "--yes"], { endpoint, version: "v2" }));
      const cfgDeploy = await floor.appliedConfig();
      keep("status", await stackpin(project, ["status", ...s]));
      keep("history", await stackpin(project, ["history", ...s]));
      keep("preview", await stackpin(project, ["preview", ...s, "--to", "previous"]));
      keep("switch-back", await stackpin(project, ["rollback", ...s, "--to", "previous", "--yes"], { endpoint, version: "v1" }));
      const cfgBack = await floor.appliedConfig();
      keep("noop", await stackpin(project, ["rollback", ...s, "--to", "v1", "--yes"]));
      // Skipped (v1 is live and verified: nothing to apply); `--force` measures the re-apply beside the floor.
      keep("force", await stackpin(project, ["rollback", ...s, "--to", "v1", "--yes", "--force"]));
      const cfgNoop = await floor.appliedConfig();
      // The floor: the same transitions from the same state, with the configs stackpin applied.
      await floor.use(cfgDeploy);
      keep("floor deploy", await floor.up({ endpoint, version: "v2" }));
      keep("floor outputs", await floor.outputs());
      keep("floor history", await floor.history());
      await floor.use(cfgBack);
      keep("floor preview", await floor.preview());
      keep("floor switch-back", await floor.up({ endpoint, version: "v1" }));
      await floor.use(cfgNoop);
      keep("floor noop", await floor.up());
    }
    console.log(`\n## Main table: medians of ${rounds} rounds (min-max), local target, stacks/dev\n`);
    table([
      ["(a) rollback to the live version (v1 -> v1): skipped", "noop", "floor noop"],
      ["(a') the same with --force (re-applied and verified)", "force", "floor noop"],
      ["(b) switch-back rollback (v2 -> v1, idle blue slot)", "switch-back", "floor switch-back"],
      ["(c) deploy of a new version (v1 -> v2)", "deploy", "floor deploy"],
      ["(d) status (floor: stack outputs)", "status", "floor outputs"],
      ["(d) history (floor: stack history)", "history", "floor history"],
      ["(d) preview --to previous (floor: preview)", "preview", "floor preview"],
    ]);
    console.log(`\nWhere the time goes (Pulumi CLI calls per run, mean over rounds, biggest first):`);
    for (const op of ["noop", "force", "switch-back", "deploy", "status", "history", "preview"]) {
      console.log(`- ${op}: ${breakdown(results.get(op)!)}`);
    }

    // Config size: versions whose config carries N entries (feature flags: the local program's schema is
    // strict, so the entries live under `features`).
    console.log(`\n## Config size (one run each; history about ${1 + rounds * 6} entries)\n`);
    const v1 = parse(fs.readFileSync(path.join(project.dir, "stacks", "dev", "v1.yaml"), "utf8")) as Record<string, any>;
    const rows: [string, string, string | undefined][] = [];
    for (const n of keyPoints) {
      const name = `v${n}`;
      const features = Object.fromEntries(Array.from({ length: n }, (_, i) => [`flag${String(i).padStart(4, "0")}`, i % 2 === 0]));
      project.writeVersion(name, stringify({ ...v1, version: name, description: `${n} feature flags`, config: { ...v1.config, features } }));
      keep(`deploy ${n}`, await stackpin(project, ["deploy", ...s, "--version", name, "--yes"]));
      keep(`noop ${n}`, await stackpin(project, ["rollback", ...s, "--to", name, "--yes", "--force"]));
      keep(`status ${n}`, await stackpin(project, ["status", ...s]));
      await floor.use(await floor.appliedConfig());
      keep(`floor noop ${n}`, await floor.up());
      rows.push([`deploy ${name} (${n} entries)`, `deploy ${n}`, undefined], [`rollback --force to the live ${name}`, `noop ${n}`, `floor noop ${n}`], [`status at ${name}`, `status ${n}`, undefined]);
    }
    table(rows);
  } finally {
    fs.rmSync(path.join(project.dir, ".bench-floor"), { recursive: true, force: true });
    await project.teardown();
  }
}

async function historyScaling(pulumi: PulumiCli): Promise<void> {
  const project = tempProject(pulumi);
  try {
    const s = ["--stack", "dev"];
    await stackpin(project, ["deploy", ...s, "--version", "v1", "--yes"]);
    const floor = await Floor.open(project, pulumi);
    await floor.use(await floor.appliedConfig());
    let entries = 1;
    const rows: [string, string, string | undefined][] = [];
    for (const n of historyPoints) {
      process.stderr.write(`history: padding to ${n} entries\n`);
      // Cheap entries: the floor's update with the same config changes nothing but is recorded.
      for (; entries < n - 1; entries++) await floor.up();
      // The last entry is stackpin's, so the live version's record is stackpin's own.
      await stackpin(project, ["rollback", ...s, "--to", "v1", "--yes"]);
      entries += 1;
      // Each round adds two entries (the two no-op updates), so a point is "about n".
      for (let r = 1; r <= rounds; r++) {
        keep(`h status ${n}`, await stackpin(project, ["status", ...s]));
        keep(`h history ${n}`, await stackpin(project, ["history", ...s]));
        keep(`h preview ${n}`, await stackpin(project, ["preview", ...s, "--version", "v2"]));
        // --force: a skipped rollback reads history once; the re-apply shows what grows with history.
        keep(`h noop ${n}`, await stackpin(project, ["rollback", ...s, "--to", "v1", "--yes", "--force"]));
        entries += 1;
        keep(`h floor history ${n}`, await floor.history());
        keep(`h floor noop ${n}`, await floor.up());
        entries += 1;
      }
      rows.push(
        [`status, ${n} entries`, `h status ${n}`, undefined],
        [`history, ${n} entries (floor: stack history)`, `h history ${n}`, `h floor history ${n}`],
        [`preview --version v2, ${n} entries`, `h preview ${n}`, undefined],
        [`rollback --force to the live v1, ${n} entries`, `h noop ${n}`, `h floor noop ${n}`],
      );
    }
    console.log(`\n## History length (medians of ${rounds} rounds, BENCH_SCALE=${scale})\n`);
    table(rows);
    // Which CLI calls grow with history: the mean time of one call of each subcommand, per point.
    const perCall = (n: number) => {
      const by = new Map<string, number[]>();
      for (const op of ["status", "history", "preview", "noop"]) {
        for (const c of results.get(`h ${op} ${n}`)!.flatMap((x) => x.calls)) (by.get(c.sub) ?? by.set(c.sub, []).get(c.sub)!).push(c.ms);
      }
      return by;
    };
    const points = historyPoints.map(perCall);
    console.log(`\nOne call's median time by history length (${historyPoints.join(" / ")} entries):`);
    for (const sub of [...points[0].keys()].sort()) {
      console.log(`- ${sub}: ${points.map((p) => (p.get(sub)?.length ? `${Math.round(median(p.get(sub)!))} ms` : "-")).join(" / ")}`);
    }
    console.log(`\nPulumi CLI calls by history length:`);
    for (const op of ["status", "history", "preview", "noop"]) {
      for (const n of historyPoints) console.log(`- ${op} at ${n}: ${breakdown(results.get(`h ${op} ${n}`)!)}`);
    }
  } finally {
    fs.rmSync(path.join(project.dir, ".bench-floor"), { recursive: true, force: true });
    await project.teardown();
  }
}

async function run(): Promise<void> {
  const pulumi = await locatePulumi({ explicit: process.env.STACKPIN_PULUMI, searchPath: process.env.PATH });
  const started = Date.now();
  console.log(`bench:rollback: Pulumi CLI ${pulumi.version}, ${rounds} rounds, BENCH_SCALE=${scale}, ${new Date().toISOString()}`);
  await mainTable(pulumi);
  await historyScaling(pulumi);
  console.log(`\n(whole benchmark: ${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

run().catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
});
