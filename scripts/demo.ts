/**
 * `npm run demo`: the main job on the embedded default. Copies `stacks/dev` into a fresh project under
 * `.stackpin/demo` (a file:// backend and local processes, nothing else), then: deploys v1, deploys v2
 * (blue/green), previews and runs the rollback to v1 (a traffic switch), deploys the broken v3 with
 * auto-rollback and watches stackpin go back to v1, prints status and history, and destroys the stack so
 * nothing keeps running. All through the library API.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { renderApply, renderHistory, renderPlan, renderProgress, renderStatus } from "../lib/cli/render";
import { ensurePulumi, packageRoot } from "../lib/engine/pulumi-cli";
import { Environment, ProgressEvent, StackpinError, VerificationFailedError } from "../lib";

const demoPassphrase = "stackpin-demo";

function progress(e: ProgressEvent): void {
  const line = renderProgress(e);
  if (line) console.error(line);
}

async function run(): Promise<void> {
  const root = packageRoot();
  const demoDir = path.join(root, ".stackpin", "demo");
  fs.rmSync(demoDir, { recursive: true, force: true });
  fs.mkdirSync(path.join(demoDir, "stacks"), { recursive: true });
  fs.cpSync(path.join(root, "stacks", "dev"), path.join(demoDir, "stacks", "dev"), { recursive: true });

  const pulumi = await ensurePulumi({ explicit: process.env.STACKPIN_PULUMI, searchPath: process.env.PATH, onProgress: console.error });
  console.log(`Pulumi CLI ${pulumi.version} (${pulumi.source})`);
  console.log(`project ${demoDir}; state in file://${path.join(demoDir, ".stackpin", "state")}; passphrase "${demoPassphrase}"\n`);
  const dev = await Environment.open({
    stack: "dev",
    projectDir: demoDir,
    passphrase: { value: process.env.PULUMI_CONFIG_PASSPHRASE ?? demoPassphrase },
    pulumi,
    actor: "demo",
  });

  console.log("== 1. deploy v1");
  console.log(renderApply(await dev.deploy({ version: "v1", message: "first release", onProgress: progress })));
  console.log("\n== 2. deploy v2");
  console.log(renderApply(await dev.deploy({ version: "v2", message: "new data dir and beta flag", onProgress: progress })));
  console.log("\n== 3. preview the rollback to the previous version (changes nothing)");
  console.log(renderPlan(await dev.previewRollback({ to: "previous", onProgress: progress })));
  console.log("\n== 4. roll back to v1");
  console.log(renderApply(await dev.rollback({ to: "v1", reason: "demo: v2 misbehaves", onProgress: progress })));
  console.log("\n== 5. deploy v3, a broken release, with auto-rollback");
  try {
    await dev.deploy({ version: "v3", message: "release 2.0.0", autoRollback: true, onProgress: progress });
    throw new Error("v3 was expected to fail verification");
  } catch (err) {
    if (!(err instanceof VerificationFailedError)) throw err;
    console.log(`stackpin refused v3 and rolled back (exit code ${err.exitCode}):\n${err.message}`);
  }
  console.log("\n== 6. status");
  console.log(renderStatus(await dev.status()));
  console.log("\n== 7. history (rollbacks are new entries; nothing was rewritten)");
  console.log(renderHistory("dev", await dev.history()));
  console.log("\n== 8. destroy: stop the service and the switch");
  await dev.destroy({ yes: true, reason: "demo done", onProgress: progress });
  console.log("destroyed; nothing the demo started is still running");
}

run().catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exitCode = err instanceof StackpinError ? err.exitCode : 1;
});
