import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { demoPassphrase, processesOf, pulumiOrSkip } from "./harness";

const run = promisify(execFile);

// What another project writes: TypeScript against the installed package's own types.
const script = `import { Environment, locatePulumi, UnknownVersionError, watch, freeze, unfreeze, verifyAudit, readAudit } from "stackpin";
import type { Plan } from "stackpin";

declare const process: { env: Record<string, string | undefined>; exitCode?: number };
declare const console: { log(text: string): void; error(text: string): void };

async function main(): Promise<void> {
  const env = await Environment.open({
    stack: "dev",
    projectDir: ".",
    passphrase: { value: process.env.PULUMI_CONFIG_PASSPHRASE },
    pulumi: await locatePulumi({ explicit: process.env.STACKPIN_PULUMI }),
  });
  const plan: Plan = await env.preview({ version: "v1" });
  console.log(JSON.stringify({ to: plan.to, creates: plan.resourceChanges.filter((r) => r.op === "create").map((r) => r.name), unknownVersionExit: new UnknownVersionError("dev", "v9", []).exitCode, exported: [watch, freeze, unfreeze, verifyAudit, readAudit].map((f) => typeof f) }));
}
main().catch((e: Error) => {
  console.error(e.message);
  process.exitCode = 1;
});
`;

describe("npm pack makes a package another project installs and uses", function () {
  let dir: string;

  after(() => {
    if (dir) {
      assert.deepEqual(processesOf(dir), [], "processes outlived the test");
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("packs the built library and CLI without tests; a project installs it offline, imports Environment and previews a stack", async function () {
    const pulumi = await pulumiOrSkip(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-pack-"));
    const started = Date.now();
    // Packs what `npm test` built; no prepack rebuild of dist/ while other test files run from it.
    const packed = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], { cwd: packageRoot(), maxBuffer: 64 << 20 });
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("["))) as [{ filename: string; files: { path: string }[] }];
    const files = info.files.map((f) => f.path);
    for (const needed of ["dist/lib/index.js", "dist/lib/index.d.ts", "dist/lib/cli/main.js", "dist/programs/local/index.js", "programs/local/traffic-switch.js", "programs/local/artifacts/hello-1.0.0.js", "tools/pulumi-cli/go.mod", "tools/pulumi-cli/go.sum"]) {
      assert.ok(files.includes(needed), `${needed} is not in the package`);
    }
    assert.deepEqual(files.filter((f) => /^(dist\/)?test\//.test(f) || /^lib\/|\.ts$/.test(f.replace(/\.d\.ts$/, ""))), [], "tests or sources in the package");
    const packSeconds = (Date.now() - started) / 1000;

    const app = path.join(dir, "app");
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "uses-stackpin", private: true }));
    const installStarted = Date.now();
    // The packages come from npm's cache, as the checkout's own `npm ci` left it; only their metadata may be fetched.
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", path.join(dir, info.filename)], { cwd: app, maxBuffer: 64 << 20 });
    const installSeconds = (Date.now() - installStarted) / 1000;
    const help = await run(path.join(app, "node_modules", ".bin", "stackpin"), ["--help"], { cwd: app });
    assert.match(help.stdout, /rollback/);

    fs.cpSync(path.join(packageRoot(), "stacks", "dev"), path.join(app, "stacks", "dev"), { recursive: true });
    fs.writeFileSync(path.join(app, "preview.ts"), script);
    const tsc = path.join(packageRoot(), "node_modules", "typescript", "bin", "tsc");
    await run(process.execPath, [tsc, "--strict", "--skipLibCheck", "--target", "es2022", "--module", "node16", "--moduleResolution", "node16", "preview.ts"], { cwd: app }).catch(
      (e: { stdout: string }) => assert.fail(`the script does not compile against the installed package's types:\n${e.stdout}`),
    );
    const previewStarted = Date.now();
    const out = await run(process.execPath, ["preview.js"], {
      cwd: app,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PULUMI_CONFIG_PASSPHRASE: demoPassphrase, STACKPIN_PULUMI: pulumi.root, PULUMI_HOME: path.join(dir, "pulumi-home") },
    });
    const result = JSON.parse(out.stdout);
    assert.equal(result.to, "v1");
    assert.ok(result.creates.includes("app-settings"), `the plan creates the app's settings: ${out.stdout}`);
    assert.equal(result.unknownVersionExit, 4);
    assert.deepEqual(result.exported, ["function", "function", "function", "function", "function"], "watch, freeze, unfreeze and the audit functions are exported");
    process.stderr.write(
      `      [figures] package: ${files.length} files; pack ${packSeconds.toFixed(1)} s, install from the npm cache ${installSeconds.toFixed(1)} s, preview through the installed package ${((Date.now() - previewStarted) / 1000).toFixed(1)} s\n`,
    );
  });
});
