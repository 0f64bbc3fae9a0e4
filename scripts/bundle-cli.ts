/**
 * The second half of `npm run build`: the CLI, `lib/cli/main.ts`, bundled with esbuild into one file,
 * `dist/lib/cli/main.bundle.js`, with a V8 code cache of it, `main.bundle.cache`; and in place of the
 * `main.js` tsc wrote, the binary that runs the bundle with its cache (`lib/cli/bin.ts`).
 *
 * Why: a command's start was mostly Node's module loader — resolving, reading and compiling a few
 * hundred small files (zod alone is 95) before `status` read anything. One file, with only the parts of
 * zod the schemas use, starts in about half the time, and compiled from the cache in less again. The
 * bundle keeps what the tsc output does: the same exports (`runCli`, `buildCli`, `main`, typed by tsc's
 * `main.d.ts`), each operation loaded when its command runs, and these loaded from `node_modules` or
 * `dist/` as before, outside the bundle:
 *
 * - `@pulumi/*`: the Automation API (loaded on first use) and the runtime the programs share with it;
 * - the programs' own code (`programs/<name>/`, all but each one's `schema.ts` and traffic switch), which
 *   the engine runs in this process and whose dynamic providers are serialized functions: they stay the
 *   files tsc wrote, with their own imports;
 * - the AWS SDK (only an `s3://` backend's writes load it, and its reads where signed reads cannot be
 *   made: `lib/records/s3-reads.ts`), vega (only the incident page), TypeScript (only a project's own
 *   program in TypeScript).
 *
 * Every `__dirname` in a bundled module is rewritten to the directory tsc put that module in, so paths
 * built from it (the fleet's worker, the plugin watchdog, the local program's artifacts) stay the same.
 * The library (`dist/lib/index.js`) and every other file in `dist/` are tsc's, unbundled.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import Module from "node:module";
import * as path from "node:path";
import * as vm from "node:vm";
import * as esbuild from "esbuild";
import { packageRoot } from "../lib/engine/pulumi-cli";

const root = packageRoot();
const cliDir = path.join(root, "dist", "lib", "cli");
const outfile = path.join(cliDir, "main.bundle.js");

/** Packages left to Node's loader, with why in the header above. */
const external = ["@pulumi/*", "@aws-sdk/*", "vega", "vega-lite", "typescript"];

/**
 * A program's own code (`require("./local")`, `require("./kubernetes/claims")` in `programs/index.ts`) is
 * required from `dist/programs/` at run time. In the bundle: the programs' config schemas, and their
 * traffic switches (`./<name>/switch`), which the engine never runs: a switch-back's first step, loaded
 * from the code cache rather than from a few dozen files of `zod` and `yaml` before traffic moves.
 */
const programCode: esbuild.Plugin = {
  name: "program-code-from-dist",
  setup(build) {
    build.onResolve({ filter: /^\.\/[a-z0-9-]+(\/[a-z0-9-]+)*$/ }, (args) => {
      if (args.importer !== path.join(root, "programs", "index.ts") || /\/(schema|switch)$/.test(args.path)) return undefined;
      const compiled = path.join(root, "dist", "programs", args.path);
      return { path: `./${path.relative(path.dirname(outfile), compiled)}`, external: true };
    });
  },
};

/** `__dirname` in a bundled module means the directory tsc emits that module into, as it did unbundled. */
const dirnameOfModule: esbuild.Plugin = {
  name: "dirname-of-module",
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      const source = fs.readFileSync(args.path, "utf8");
      if (!/\b__dirname\b/.test(source)) return { contents: source, loader: "ts" };
      const emittedDir = path.join(root, "dist", path.relative(root, path.dirname(args.path)));
      const relative = JSON.stringify(path.relative(path.dirname(outfile), emittedDir));
      return { contents: source.replace(/\b__dirname\b/g, `require("node:path").join(__dirname, ${relative})`), loader: "ts" };
    });
  },
};

/**
 * The V8 code cache of the bundle, made in this process (the Node that built it): compiled, its modules'
 * top level run as a `require` runs them (nothing is read or written: the CLI's `main` runs only when it
 * is the program), and the CLI's argument parsing run once on `--version`, so that what every command runs
 * first is in the cache too. Prefixed with the bundle's SHA-256, which `bin.ts` checks.
 */
async function codeCache(): Promise<Buffer> {
  const source = fs.readFileSync(outfile, "utf8").replace(/^#!.*/, "");
  const script = new vm.Script(Module.wrap(source), { filename: outfile });
  const cli = new Module(outfile, module);
  cli.filename = outfile;
  (script.runInThisContext() as (...args: unknown[]) => void).call(cli.exports, cli.exports, Module.createRequire(outfile), cli, outfile, cliDir);
  const { runCli } = cli.exports as typeof import("../lib/cli/main");
  const discard = { write: () => true };
  await runCli(["--version"], { env: { PATH: "" }, stdout: discard, stderr: discard });
  return Buffer.concat([crypto.createHash("sha256").update(source).digest(), script.createCachedData()]);
}

async function run(): Promise<void> {
  const result = await esbuild.build({
    entryPoints: [path.join(root, "lib", "cli", "main.ts")],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    external,
    plugins: [programCode, dirnameOfModule],
    sourcemap: true,
    metafile: !!process.env.STACKPIN_BUNDLE_REPORT,
    logLevel: "warning",
  });
  // The binary: bin.ts as it is (it imports only Node's own modules), in place of tsc's main.js.
  await esbuild.build({
    entryPoints: [path.join(root, "lib", "cli", "bin.ts")],
    outfile: path.join(cliDir, "main.js"),
    platform: "node",
    target: "node20",
    format: "cjs",
    banner: { js: "#!/usr/bin/env node" },
    logLevel: "warning",
  });
  // tsc's source map was of its main.js, which is gone.
  fs.rmSync(path.join(cliDir, "main.js.map"), { force: true });
  fs.writeFileSync(path.join(cliDir, "main.bundle.cache"), await codeCache());
  // Silent like tsc (`npm run -s stackpin -- status --json` prints the CLI's output only); what went in, on request.
  if (result.metafile) console.error(await esbuild.analyzeMetafile(result.metafile));
}

run().catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
});
