/**
 * `npm run setup`: finds a usable Pulumi CLI (STACKPIN_PULUMI, the project cache, PATH, PULUMI_HOME) or
 * builds one from Pulumi's Go modules into tools/pulumi-cli/bin, and says which path it took.
 */
import { ensurePulumi } from "../lib/engine/pulumi-cli";

async function run(): Promise<void> {
  const started = Date.now();
  const cli = await ensurePulumi({
    explicit: process.env.STACKPIN_PULUMI,
    searchPath: process.env.PATH,
    pulumiHome: process.env.PULUMI_HOME,
    onProgress: (line) => console.error(line),
  });
  console.log(`Pulumi CLI ${cli.version} (${cli.source}): ${cli.root} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

run().catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exitCode = 10;
});
