/**
 * `npm run setup:s3`: the S3 server the `s3://` backend tests run against (versitygw, built from its Go
 * module into tools/s3/bin, gitignored), reused when present; says which and how long it took.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { packageRoot } from "../lib/engine/pulumi-cli";

const version = "v1.8.0";
const binDir = path.join(packageRoot(), "tools", "s3", "bin");
const binary = path.join(binDir, "versitygw");

function run(): void {
  const started = Date.now();
  if (fs.existsSync(binary)) {
    console.log(`versitygw (cached): ${binary} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return;
  }
  console.error(`building versitygw ${version} from its Go module into ${binDir} (2-5 minutes)`);
  fs.mkdirSync(binDir, { recursive: true });
  // nice: the build takes most of a small machine for minutes; whatever else runs there keeps going.
  execFileSync("nice", ["-n", "19", "go", "install", `github.com/versity/versitygw/cmd/versitygw@${version}`], {
    env: { ...process.env, GOBIN: binDir },
    stdio: "inherit",
  });
  console.log(`versitygw ${version} (built): ${binary} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

try {
  run();
} catch (err) {
  console.error(`error: could not build versitygw: ${(err as Error).message}`);
  process.exitCode = 10;
}
