/**
 * The `stackpin` binary as `npm run build` installs it at `dist/lib/cli/main.js` (see
 * `scripts/bundle-cli.ts`): it runs the CLI bundled into `main.bundle.js` as this very module — its
 * exports are this module's, and `require.main === module` holds in it when this file is the program —
 * compiled with the V8 code cache the build made of it, `main.bundle.cache`.
 *
 * Why: compiling the bundle was a fifth of a `status`; with the cache V8 skips it. The cache is used only
 * for the exact bundle it was made from (its SHA-256 is the cache file's first 32 bytes); V8 itself
 * refuses one another Node or other flags made, and then compiles as usual. Nothing is ever written here.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vm from "node:vm";
import Module from "node:module";

const bundle = path.join(__dirname, "main.bundle.js");
const cacheFile = path.join(__dirname, "main.bundle.cache");
const buildInfo = path.join(__dirname, "..", "..", ".tsbuildinfo");

// In a checkout where tsc ran after the bundle was made (`tsc` alone, after an edit), the bundle may hold
// older code than dist/ beside it: refuse, rather than run it. (The packed package has no .tsbuildinfo.)
const built = (file: string) => (fs.existsSync(file) ? fs.statSync(file).mtimeMs : undefined);
if ((built(buildInfo) ?? 0) > (built(bundle) ?? Infinity)) {
  throw new Error(`tsc ran after the CLI was bundled, so ${bundle} may be out of date: run \`npm run build\` (tsc, then the bundle)`);
}

const source = fs.readFileSync(bundle, "utf8").replace(/^#!.*/, "");
const cache = fs.existsSync(cacheFile) ? fs.readFileSync(cacheFile) : undefined;
const digest = crypto.createHash("sha256").update(source).digest();
const script = new vm.Script(Module.wrap(source), {
  filename: bundle,
  cachedData: cache && digest.equals(cache.subarray(0, 32)) ? cache.subarray(32) : undefined,
});
(script.runInThisContext() as (...args: unknown[]) => void).call(module.exports, module.exports, require, module, bundle, __dirname);
