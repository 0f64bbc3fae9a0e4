import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import type { PulumiCommand } from "@pulumi/pulumi/automation";
import { automation } from "./automation";
import { PulumiUnavailableError } from "../errors";
import { recordCall, timeCommand, timingEnabled } from "./cli-timing";

const run = promisify(execFile);

/** Where the Pulumi CLI in use came from; printed so nobody has to guess at 3 a.m. */
export type PulumiSource =
  | "STACKPIN_PULUMI"
  | "project cache (tools/pulumi-cli/bin)"
  | "PATH"
  | "PULUMI_HOME"
  | "built from Go modules"
  | "PulumiCommand.install";

/** A usable Pulumi CLI. */
export interface PulumiCli {
  /** What the Automation API runs. */
  command: PulumiCommand;
  /** The directory holding the `pulumi` binary. */
  root: string;
  version: string;
  source: PulumiSource;
}

/** Where to look for a Pulumi CLI. Every field is optional; defaults are the project's own cache. */
export interface LocatePulumiOptions {
  /** A `pulumi` binary or the directory holding it (`$STACKPIN_PULUMI`); when set, nothing else is tried. */
  explicit?: string;
  /** The `PATH` to search. */
  searchPath?: string;
  /** `$PULUMI_HOME`; its `bin/` is searched. Defaults to `~/.pulumi`. */
  pulumiHome?: string;
  /** The project-local cache the Go build writes to. Defaults to `tools/pulumi-cli` in this package. */
  cacheDir?: string;
  /** A directory to remember the CLI's version in, so that `pulumi version` runs once, not in every process. */
  versionCacheDir?: string;
}

/** Options for {@link ensurePulumi}: where to look, and what it may do when nothing is found. */
export interface EnsurePulumiOptions extends LocatePulumiOptions {
  /** Build the CLI with Go into the cache when none is found (default true). */
  build?: boolean;
  /** Fall back to `PulumiCommand.install` (needs internet) when Go is missing or fails (default true). */
  install?: boolean;
  /** Progress lines for people ("building the Pulumi CLI ..."). */
  onProgress?: (line: string) => void;
}

function isStackpinPackage(dir: string): boolean {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: string }).name === "stackpin";
  } catch {
    return false;
  }
}

/** The directory of this package (holding `package.json`), whether a checkout or installed under node_modules. */
export function packageRoot(): string {
  let dir = __dirname;
  while (!isStackpinPackage(dir)) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the stackpin package root above ${__dirname}`);
    dir = up;
  }
  return dir;
}

/** The `@pulumi/pulumi` version this package is built against; the Go build pins the CLI to it. */
export function sdkVersion(): string {
  return (require("@pulumi/pulumi/package.json") as { version: string }).version;
}

function defaultCacheDir(): string {
  return path.join(packageRoot(), "tools", "pulumi-cli");
}

/**
 * The version `pulumi version` printed for this very binary (same path, size and modification time), from
 * `<cacheDir>/pulumi-version.json`: `PulumiCommand.get` runs `pulumi version` in every process, a CLI call
 * of 0.2-0.3 s that says the same thing each time.
 */
function cachedVersion(cacheDir: string | undefined, binary: string): { key: string; file?: string; version?: string } {
  const st = fs.statSync(binary);
  const key = `${path.resolve(binary)}:${st.size}:${Math.round(st.mtimeMs)}`;
  if (!cacheDir) return { key };
  const file = path.join(cacheDir, "pulumi-version.json");
  try {
    const cached = JSON.parse(fs.readFileSync(file, "utf8")) as { key?: string; version?: string };
    return { key, file, version: cached.key === key ? cached.version : undefined };
  } catch {
    return { key, file };
  }
}

async function tryRoot(root: string, source: PulumiSource, cacheDir?: string): Promise<PulumiCli | undefined> {
  const binary = path.join(root, "bin", "pulumi");
  if (!fs.existsSync(binary)) return undefined;
  const cache = cachedVersion(cacheDir, binary);
  if (cache.version) {
    const version = cache.version;
    let command: PulumiCommand | undefined;
    return {
      // Made when first used: a command that never runs the Automation API never loads it.
      get command() {
        if (!command) {
          // What `get` would have made from the same output (its constructor is private to the type only).
          const semver = require(require.resolve("semver", { paths: [require.resolve("@pulumi/pulumi/package.json")] })) as { parse(v: string): unknown };
          command = Reflect.construct(automation().PulumiCommand, [path.resolve(binary), semver.parse(version)]) as PulumiCommand;
          if (timingEnabled()) command = timeCommand(command);
        }
        return command;
      },
      root: path.join(root, "bin"),
      version,
      source,
    };
  }
  const started = performance.now();
  let command = await automation().PulumiCommand.get({ root });
  // `get` runs `pulumi version`: part of an operation's cost, so it is counted.
  if (timingEnabled()) recordCall("version", performance.now() - started);
  // Written only inside a project (its `.stackpin` or `stacks` is there): a command run in the wrong directory leaves nothing.
  const project = cache.file ? path.dirname(path.dirname(path.dirname(cache.file))) : undefined;
  if (cache.file && command.version && project && [".stackpin", "stacks"].some((d) => fs.existsSync(path.join(project, d)))) {
    try {
      fs.mkdirSync(path.dirname(cache.file), { recursive: true });
      fs.writeFileSync(cache.file, JSON.stringify({ key: cache.key, version: command.version.toString() }));
    } catch {
      // A cache that cannot be written costs a `pulumi version` next time, nothing more.
    }
  }
  if (timingEnabled()) command = timeCommand(command);
  return { command, root: path.join(root, "bin"), version: command.version?.toString() ?? "unknown", source };
}

/** Finds an installed Pulumi CLI, or raises {@link PulumiUnavailableError} naming every place it looked. */
export async function locatePulumi(options: LocatePulumiOptions = {}): Promise<PulumiCli> {
  const tried: string[] = [];
  const candidates: Array<[string, PulumiSource]> = [];
  if (options.explicit) {
    const p = fs.existsSync(options.explicit) && fs.statSync(options.explicit).isFile()
      ? path.dirname(options.explicit)
      : options.explicit;
    candidates.push([path.basename(p) === "bin" ? path.dirname(p) : p, "STACKPIN_PULUMI"]);
  } else {
    candidates.push([options.cacheDir ?? defaultCacheDir(), "project cache (tools/pulumi-cli/bin)"]);
    for (const dir of (options.searchPath ?? "").split(path.delimiter).filter(Boolean)) {
      if (fs.existsSync(path.join(dir, "pulumi")) && path.basename(dir) === "bin") {
        candidates.push([path.dirname(dir), "PATH"]);
      }
    }
    candidates.push([options.pulumiHome ?? path.join(os.homedir(), ".pulumi"), "PULUMI_HOME"]);
  }
  for (const [root, source] of candidates) {
    try {
      const cli = await tryRoot(root, source, options.versionCacheDir);
      if (cli) return cli;
      tried.push(`${path.join(root, "bin", "pulumi")} (${source}): not there`);
    } catch (err) {
      tried.push(`${path.join(root, "bin", "pulumi")} (${source}): ${(err as Error).message.split("\n")[0]}`);
    }
  }
  throw new PulumiUnavailableError(`looked in:\n  ${tried.join("\n  ")}`);
}

/**
 * Builds the Pulumi CLI from Pulumi's Go modules at the SDK's version, into `<cacheDir>/bin/pulumi`.
 * The pinned `go.mod`/`go.sum` in the cache directory make the build reproducible.
 */
export async function buildPulumiWithGo(cacheDir: string, onProgress: (line: string) => void): Promise<PulumiCli> {
  const version = sdkVersion();
  const started = Date.now();
  onProgress(`building the Pulumi CLI v${version} from Go modules in ${cacheDir} (a few minutes the first time)`);
  await run(
    "go",
    [
      "build",
      "-trimpath",
      "-ldflags",
      `-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v${version}`,
      "-o",
      path.join(cacheDir, "bin", "pulumi"),
      "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi",
    ],
    {
      cwd: cacheDir,
      maxBuffer: 64 * 1024 * 1024,
      // Pulumi's modules are not in the checksum database reachable here; go.sum pins them instead.
      env: { ...process.env, GOFLAGS: "-mod=mod", GONOSUMDB: "github.com/pulumi", GONOSUMCHECK: "1" },
    },
  );
  onProgress(`built the Pulumi CLI in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const cli = await tryRoot(cacheDir, "built from Go modules");
  if (!cli) throw new PulumiUnavailableError(`go build finished but ${cacheDir}/bin/pulumi is missing`);
  return cli;
}

/**
 * Finds a Pulumi CLI, or makes one: a Go build from Pulumi's modules when Go is present, else
 * `PulumiCommand.install` (which downloads, so needs internet). Raises {@link PulumiUnavailableError}
 * with every reason when all paths fail.
 */
export async function ensurePulumi(options: EnsurePulumiOptions = {}): Promise<PulumiCli> {
  const say = options.onProgress ?? (() => undefined);
  let reasons: string[] = [];
  try {
    return await locatePulumi(options);
  } catch (err) {
    if (options.explicit) throw err;
    reasons.push((err as Error).message);
  }
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  if (options.build !== false) {
    try {
      await run("go", ["version"]);
      return await buildPulumiWithGo(cacheDir, say);
    } catch (err) {
      const e = err as Error & { stderr?: string };
      reasons.push(`go build failed: ${(e.stderr || e.message).trim().split("\n").slice(-5).join("\n")}`);
      say(`could not build the Pulumi CLI with Go; trying PulumiCommand.install`);
    }
  }
  if (options.install !== false) {
    try {
      say(`installing the Pulumi CLI v${sdkVersion()} with PulumiCommand.install into ${cacheDir}`);
      const command = await automation().PulumiCommand.install({ root: cacheDir });
      return { command, root: path.join(cacheDir, "bin"), version: command.version?.toString() ?? "unknown", source: "PulumiCommand.install" };
    } catch (err) {
      reasons.push(`PulumiCommand.install failed: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  reasons = reasons.map((r) => r.replace(/^no usable Pulumi CLI: /, "").replace(/\nRun `npm run setup`.*$/s, ""));
  throw new PulumiUnavailableError(reasons.join("\n"));
}

/**
 * Writes the `pulumi-resource-pulumi-nodejs` plugin that runs Node dynamic providers, pointing at this
 * package's `@pulumi/pulumi` by absolute path (the stock script resolves it from the working directory,
 * which fails when state lives outside the project). Returns the directory to put on `PATH`.
 */
export function writeDynamicProviderPlugin(dir: string): string {
  const script = require.resolve("@pulumi/pulumi/cmd/dynamic-provider");
  const file = path.join(dir, "pulumi-resource-pulumi-nodejs");
  // The watchdog ends the plugin with the CLI that started it (lib/engine/plugin-watchdog.ts).
  const watchdog = path.join(__dirname, "plugin-watchdog.js");
  const body = `#!/bin/sh\nexec "${process.execPath}" --require "${watchdog}" "${script}" "$@"\n`;
  fs.mkdirSync(dir, { recursive: true });
  if (!fs.existsSync(file) || fs.readFileSync(file, "utf8") !== body) {
    fs.writeFileSync(file, body, { mode: 0o755 });
  }
  return dir;
}
