import { strict as assert } from "node:assert";
import { execFile, spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as net from "node:net";
import * as path from "node:path";
import { promisify } from "node:util";
import { locatePulumi, packageRoot, PulumiCli } from "../../lib/engine/pulumi-cli";

/** The passphrase `stacks/dev`'s secrets are encrypted with. */
export const demoPassphrase = "stackpin-demo";

const cliEntry = path.join(packageRoot(), "dist", "lib", "cli", "main.js");

/** What a CLI run printed and returned. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** A CLI run in progress. */
export interface StartedCli {
  /** The CLI's pid; with `detached`, also its process group's id. */
  pid: number;
  done: Promise<CliRun>;
  /** Resolves with what the stream printed so far once it matches `pattern`; rejects if the CLI ends first. */
  waitFor(pattern: RegExp, stream?: "stdout" | "stderr"): Promise<string>;
}

/** A throw-away project: a copy of `stacks/dev`, a file:// backend and local resources in a temp dir. */
export interface TempProject {
  dir: string;
  stateDir: string;
  env: NodeJS.ProcessEnv;
  /** Runs `stackpin <args>` in the project as a user would, with the project's environment. */
  cli(args: string[], options?: { env?: NodeJS.ProcessEnv; input?: string }): Promise<CliRun>;
  /** Starts `stackpin <args>` without waiting; `detached` gives it a process group of its own. */
  start(args: string[], options?: { detached?: boolean }): StartedCli;
  /**
   * A digest of every file in the backend except the audit trail (a refused attempt is appended to it,
   * by design): equal digests mean the state and stackpin's records were not touched.
   */
  stateDigest(): string;
  writeVersion(name: string, text: string): void;
  /** Destroys the stack (stopping what it started), asserts nothing is left, and removes the project. */
  teardown(): Promise<void>;
}

/** Processes whose environment points into `dir`: everything a stack in that project started. */
export function processesOf(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const zombie = fs.readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]?.[0] === "Z";
      if (!zombie && fs.readFileSync(`/proc/${entry}/environ`, "utf8").includes(dir)) pids.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/** Files (not directories) under `dir`. */
export function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .map((f) => path.join(dir, f))
    .filter((f) => fs.statSync(f).isFile());
}

/** True when nothing listens on 127.0.0.1:port. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A loopback port nothing listens on right now (servers the tests start listen on it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

let located: PulumiCli | undefined;
let reason: string | undefined;

/**
 * The Pulumi CLI for end-to-end tests. When none is found the suite is skipped with a loud banner,
 * unless STACKPIN_REQUIRE_E2E=1 (set by .ci/run), where it fails.
 */
export async function pulumiOrSkip(ctx: Mocha.Context): Promise<PulumiCli> {
  if (!located && !reason) {
    try {
      located = await locatePulumi({ explicit: process.env.STACKPIN_PULUMI, searchPath: process.env.PATH });
      process.stderr.write(`      [e2e] real Pulumi engine: CLI ${located.version}, ${located.source}: ${located.root}\n`);
    } catch (err) {
      reason = (err as Error).message;
    }
  }
  if (located) return located;
  if (process.env.STACKPIN_REQUIRE_E2E === "1") throw new Error(`end-to-end tests need the Pulumi CLI: ${reason}`);
  const banner = "!".repeat(78);
  process.stderr.write(`\n${banner}\n  END-TO-END TESTS SKIPPED: no Pulumi CLI.\n  ${reason}\n  Run \`npm run setup\`.\n${banner}\n`);
  ctx.skip();
}

function run(args: string[], cwd: string, env: NodeJS.ProcessEnv, input?: string, detached = false): StartedCli {
  const cleanEnv = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined));
  const child = spawn(process.execPath, [cliEntry, ...args], { cwd, env: cleanEnv, stdio: ["pipe", "pipe", "pipe"], detached });
  const out = { stdout: "", stderr: "" };
  let closed = false;
  const waiters: { pattern: RegExp; stream: "stdout" | "stderr"; resolve: (s: string) => void; reject: (e: Error) => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      if (w.pattern.test(out[w.stream])) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(out[w.stream]);
      }
    }
  };
  child.stdout.on("data", (d) => ((out.stdout += d), check()));
  child.stderr.on("data", (d) => ((out.stderr += d), check()));
  child.stdin.end(input ?? "");
  const done = new Promise<CliRun>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      closed = true;
      check();
      for (const w of waiters.splice(0)) {
        w.reject(new Error(`the CLI ended (${code ?? signal}) before its ${w.stream} matched ${w.pattern}:\n${out[w.stream]}`));
      }
      resolve({ code: code ?? -1, stdout: out.stdout, stderr: out.stderr });
    });
  });
  return {
    pid: child.pid!,
    done,
    waitFor: (pattern, stream = "stderr") =>
      new Promise((resolve, reject) => {
        if (pattern.test(out[stream])) return resolve(out[stream]);
        if (closed) return reject(new Error(`the CLI had ended before its ${stream} matched ${pattern}:\n${out[stream]}`));
        waiters.push({ pattern, stream, resolve, reject });
      }),
  };
}

function digestDir(dir: string, skip: string[] = []): string {
  const hash = crypto.createHash("sha256");
  const walk = (d: string) => {
    if (!fs.existsSync(d)) return;
    for (const entry of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, entry.name);
      if (skip.includes(path.relative(dir, p))) continue;
      if (entry.isDirectory()) walk(p);
      else hash.update(path.relative(dir, p)).update(fs.readFileSync(p));
    }
  };
  walk(dir);
  return hash.digest("hex");
}

/**
 * Makes a temp project with a stack copied in (`stacks/dev` unless `from` names another directory) and
 * the CLI pointed at `pulumi`. The project is readable by other users so PostgreSQL can reach restores.
 */
export function tempProject(pulumi: PulumiCli, options: { stack?: string; from?: string } = {}): TempProject {
  const stack = options.stack ?? "dev";
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-e2e-"));
  fs.chmodSync(dir, 0o755);
  fs.cpSync(options.from ?? path.join(packageRoot(), "stacks", "dev"), path.join(dir, "stacks", stack), { recursive: true });
  const stateDir = path.join(dir, ".stackpin", "state");
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PULUMI_CONFIG_PASSPHRASE: demoPassphrase,
    PULUMI_HOME: path.join(dir, ".pulumi-home"),
    STACKPIN_PULUMI: path.dirname(pulumi.root),
    STACKPIN_ACTOR: "e2e",
  };
  return {
    dir,
    stateDir,
    env,
    cli: (args, options = {}) => run(args, dir, { ...env, ...options.env }, options.input).done,
    start: (args, options = {}) => run(args, dir, env, undefined, options.detached),
    stateDigest: () => digestDir(stateDir, [".stackpin-audit"]),
    writeVersion: (name, text) => fs.writeFileSync(path.join(dir, "stacks", stack, `${name}.yaml`), text),
    async teardown() {
      const stateFiles = path.join(dir, ".stackpin", "state", ".pulumi", "stacks");
      if (fs.existsSync(stateFiles)) {
        const r = await run(["destroy", "--stack", stack, "--yes"], dir, env).done;
        assert.equal(r.code, 0, `destroy failed:\n${r.stderr}`);
      }
      assert.deepEqual(processesOf(dir), [], "processes outlived the stack");
      assert.deepEqual(filesUnder(path.join(dir, ".stackpin", "local")), [], "files outlived the stack");
      const engineDir = path.join(dir, ".stackpin", "engine");
      const scratch = fs.existsSync(engineDir) ? fs.readdirSync(engineDir).filter((f) => f.startsWith("work-")) : [];
      assert.deepEqual(scratch, [], "scratch workspaces left behind");
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Parses stdout as the one JSON document `--json` promises, failing with what was printed otherwise. */
export function json<T = any>(r: CliRun): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${r.code}):\n${r.stdout}\nstderr:\n${r.stderr}`);
  }
}

/**
 * Runs the Pulumi CLI itself on a stack of the project, as an operator would outside stackpin: a
 * workspace of its own (the project's backend, the stack's salt), the passphrase, and the dynamic provider
 * plugin stackpin wrote for the project. No in-flight mark, no records lock. Resolves to its stdout.
 */
export async function operatorPulumi(
  project: TempProject,
  pulumi: PulumiCli,
  stack: { project: string; name: string; encryptionsalt?: string },
  args: string[],
): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-operator-"));
  try {
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), JSON.stringify({ name: stack.project, runtime: "nodejs", backend: { url: `file://${project.stateDir}` } }));
    fs.writeFileSync(path.join(dir, `Pulumi.${stack.name}.yaml`), JSON.stringify(stack.encryptionsalt ? { encryptionsalt: stack.encryptionsalt } : {}));
    const env = {
      ...process.env,
      PULUMI_HOME: project.env.PULUMI_HOME,
      PULUMI_CONFIG_PASSPHRASE: demoPassphrase,
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PATH: [path.join(project.dir, ".stackpin", "engine", "bin"), pulumi.root, process.env.PATH].join(path.delimiter),
    };
    const { stdout } = await promisify(execFile)(pulumi.command.command, [...args, "--non-interactive", "--stack", stack.name], { cwd: dir, env, maxBuffer: 64 << 20 });
    return stdout;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** mulberry32: a small seeded PRNG, so a failing trial can be replayed with the same seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
