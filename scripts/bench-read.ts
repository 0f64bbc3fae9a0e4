/**
 * `npm run bench:read`: how long `stackpin status` and `stackpin history` take end to end, as a user runs
 * them (`node dist/lib/cli/main.js …`, text and `--json`), on a `file://` backend and on an `s3://` one
 * (versitygw on loopback, started here), beside the floor: a bare `node -e ""` measured in the same run.
 * Printed, not asserted. Each backend holds a temp copy of `stacks/dev` deployed at v1 then v2 (the
 * local target); the runs take turns (floor, then each command on each backend, round after round) so
 * that a busy machine weighs on all of them alike; everything runs with this process's environment (as
 * a shell would), so Node's own start here is the floor's. Nothing is left behind.
 *
 * BENCH_ROUNDS (default 15): runs of each command; printed as median (min-max).
 * BENCH_COMPARE: another build's `dist/lib/cli/main.js` (a checkout of another version, built), timed
 * in the same rounds as this one, to compare two versions on the same machine in the same conditions
 * (the stacks are deployed by this build).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { locatePulumi, packageRoot } from "../lib/engine/pulumi-cli";
import { TempProject, tempProject } from "../test/e2e/harness";
import { S3Server, startS3Server, versitygwBinary } from "../test/e2e/s3-server";

const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 15));
const builds = [
  { name: "", entry: path.join(packageRoot(), "dist", "lib", "cli", "main.js") },
  ...(process.env.BENCH_COMPARE ? [{ name: ` (${process.env.BENCH_COMPARE})`, entry: path.resolve(process.env.BENCH_COMPARE) }] : []),
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sec = (ms: number) => (ms / 1000).toFixed(2);
const spread = (xs: number[]) => `${sec(median(xs))} s (${sec(Math.min(...xs))}-${sec(Math.max(...xs))})`;

/** Runs `node <args>` in `cwd` with the environment given; resolves to its wall time in ms (from spawn to exit). */
async function timed(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, args, { cwd, env: Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)), stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stdout.resume();
  child.stderr.on("data", (d) => (stderr += d));
  const code = await new Promise<number>((resolve, reject) => (child.on("error", reject), child.on("close", (c) => resolve(c ?? -1))));
  const ms = performance.now() - started;
  if (code !== 0) throw new Error(`node ${args.join(" ")} exited ${code}:\n${stderr}`);
  return ms;
}

async function deployed(project: TempProject): Promise<void> {
  for (const version of ["v1", "v2"]) {
    const r = await project.cli(["deploy", "--stack", "dev", "--version", version, "--yes"]);
    if (r.code !== 0) throw new Error(`deploy ${version} exited ${r.code}:\n${r.stderr}`);
  }
}

async function run(): Promise<void> {
  const pulumi = await locatePulumi({ explicit: process.env.STACKPIN_PULUMI, searchPath: process.env.PATH });
  const started = Date.now();
  console.log(`bench:read: Node ${process.version}, ${rounds} rounds, ${new Date().toISOString()}`);
  const backends: { name: string; project: TempProject }[] = [];
  let s3: S3Server | undefined;
  try {
    backends.push({ name: "file://", project: tempProject(pulumi) });
    if (fs.existsSync(versitygwBinary)) {
      s3 = await startS3Server(versitygwBinary);
      const project = tempProject(pulumi);
      Object.assign(project.env, s3.env, { STACKPIN_BACKEND: s3.backendUrl("state") });
      backends.push({ name: "s3://", project });
    } else {
      console.log(`(no ${versitygwBinary}: s3:// skipped; \`npm run setup:s3\` builds it)`);
    }
    for (const b of backends) await deployed(b.project);

    const commands = [["status"], ["status", "--json"], ["history"], ["history", "--json"]];
    const floor: number[] = [];
    const samples = new Map<string, number[]>();
    for (let r = 1; r <= rounds; r++) {
      floor.push(await timed(["-e", ""], backends[0].project.dir, process.env));
      for (const build of builds) {
        for (const b of backends) {
          for (const c of commands) {
            const key = `${c.join(" ")}${build.name} ${b.name}`;
            const ms = await timed([build.entry, ...c, "--stack", "dev"], b.project.dir, { ...process.env, ...b.project.env });
            (samples.get(key) ?? samples.set(key, []).get(key)!).push(ms);
          }
        }
      }
    }

    console.log(`\n## status and history, end to end: medians of ${rounds} runs (min-max)\n`);
    console.log(`the floor, Node's own start (\`node -e ""\`): ${spread(floor)}\n`);
    console.log(`| command | ${backends.map((b) => b.name).join(" | ")} |`);
    console.log(`|---|${backends.map(() => "---").join("|")}|`);
    for (const build of builds) {
      for (const c of commands) {
        const key = (b: { name: string }) => `${c.join(" ")}${build.name} ${b.name}`;
        console.log(`| \`${c.join(" ")}\`${build.name} | ${backends.map((b) => spread(samples.get(key(b))!)).join(" | ")} |`);
      }
    }
  } finally {
    for (const b of backends) {
      // The s3:// stack's state is in the bucket, where the project's teardown does not look: destroyed here.
      if (b.name === "s3://") await b.project.cli(["destroy", "--stack", "dev", "--yes"]);
      await b.project.teardown();
    }
    await s3?.stop();
  }
  console.log(`\n(whole benchmark: ${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

run().catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
});
