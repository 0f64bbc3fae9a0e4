import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { runCli } from "../../lib/cli/main";
import { openEnvironment } from "../../lib";
import { StackpinError } from "../../lib/errors";
import { argList, deployableVersion, documentedCodes, fuzzSeed, hasStackTrace, VersionCase, versionCase } from "../unit/fuzz-cases";
import { demoPassphrase, json, pulumiOrSkip, TempProject, tempProject } from "./harness";

/** What one fuzz case did: its exit code and output, and whether the backend changed. */
interface Outcome {
  what: string;
  code: number;
  stderr: string;
  changed: boolean;
  /** Set when the case broke a rule other than the exit code's (a file the library refused, accepted by the CLI). */
  problem?: string;
}

/**
 * Generated version files and command lines against a deployed stack, in-process (the CLI's entry as a
 * function, and the library's loading) and through the real CLI. Every case must end with a documented
 * exit code other than 1, print no stack trace, and leave the backend as it was unless it succeeded.
 */
describe("fuzz: no input makes stackpin crash, and a refusal changes nothing", function () {
  this.timeout(900_000);
  const inProcessRuns = Number(process.env.STACKPIN_FUZZ_RUNS ?? 2000);
  const cliRefusals = Number(process.env.STACKPIN_FUZZ_CLI_RUNS ?? 100);
  let project: TempProject;
  const outcomes = { inProcess: [] as Outcome[], cli: [] as Outcome[] };
  const bad = (o: Outcome) => o.code === 1 || !documentedCodes.has(o.code) || hasStackTrace(o.stderr) || !!o.problem;
  const stackDir = () => path.join(project.dir, "stacks", "dev");

  before(async function () {
    const pulumi = await pulumiOrSkip(this);
    process.stderr.write(`      [fuzz] seed ${fuzzSeed} (set STACKPIN_FUZZ_SEED to replay another)\n`);
    project = tempProject(pulumi);
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"]);
    assert.equal(r.code, 0, r.stderr);
  });

  after(async () => {
    const all = [...outcomes.inProcess, ...outcomes.cli];
    process.stderr.write(
      `      [figures] fuzz: ${outcomes.inProcess.length} cases in-process, ${outcomes.cli.length} through the CLI, ` +
        `crashes ${all.filter(bad).length}, state changes ${all.filter((o) => o.changed).length} (seed ${fuzzSeed})\n`,
    );
    await project?.teardown();
  });

  function report(list: Outcome[]): string {
    return list
      .filter((o) => bad(o) || o.changed)
      .slice(0, 5)
      .map((o) => `${o.what}: exit ${o.code}${o.changed ? ", backend changed" : ""}${o.problem ? `, ${o.problem}` : ""}\n${o.stderr.slice(-1500)}`)
      .join("\n---\n");
  }

  /** Runs the CLI's entry in this process, as the binary would with these arguments and environment. */
  async function inProcess(argv: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = "";
    let stderr = "";
    const code = await runCli([...argv, "--project-dir", project.dir], {
      env,
      stdout: { write: (t: string) => (stdout += t) },
      stderr: { write: (t: string) => (stderr += t) },
    });
    return { code, stdout, stderr };
  }

  it(`runs ${inProcessRuns} generated version files and argument lists in-process: none crashes or changes the backend`, async () => {
    const withPassphrase = { ...project.env, PULUMI_CONFIG_PASSPHRASE: demoPassphrase };
    const { PULUMI_CONFIG_PASSPHRASE: _, ...withoutPassphrase } = project.env;
    const digest = project.stateDigest();
    // Commands that would reach the engine with a valid file are left to the next test; here a file the
    // library accepts is counted as loaded, and every refused one goes through the CLI's entry too.
    const arbitrary = fc.oneof(
      { weight: 3, arbitrary: versionCase("v9").map((v) => ({ type: "file" as const, v, verb: 0 })) },
      { weight: 1, arbitrary: argList.map((argv) => ({ type: "args" as const, argv })) },
    );
    const verbs = [
      ["deploy", "--stack", "dev", "--version", "v9", "--yes"],
      ["preview", "--stack", "dev", "--version", "v9"],
      ["rollback", "--stack", "dev", "--to", "v9", "--yes"],
      ["deploy", "--stack", "dev", "--version", "9", "--json"],
    ];
    let n = 0;
    await fc.assert(
      fc.asyncProperty(arbitrary, async (c) => {
        let outcome: Outcome;
        if (c.type === "file") {
          fs.writeFileSync(path.join(stackDir(), "v9.yaml"), c.v.text);
          let accepted = true;
          try {
            const ctx = await openEnvironment({ stack: "dev", projectDir: project.dir, passphrase: { value: demoPassphrase }, actor: "fuzz" });
            ctx.store.version(ctx.stack, "v9");
          } catch (e) {
            if (!(e instanceof StackpinError)) {
              outcomes.inProcess.push({ what: `load ${c.v.kind}`, code: 1, stderr: String((e as Error).stack), changed: false });
              return false;
            }
            accepted = false;
          }
          if (accepted) {
            outcome = { what: `load ${c.v.kind}`, code: 0, stderr: "", changed: false };
          } else {
            const argv = verbs[n++ % verbs.length];
            const r = await inProcess(argv, withPassphrase);
            outcome = { what: `${argv.join(" ")} with ${c.v.kind}`, code: r.code, stderr: r.stderr, changed: false };
            if (r.code !== 5) outcome.problem = "the library refused the file but the CLI did not exit 5";
          }
        } else {
          const r = await inProcess(c.argv, withoutPassphrase);
          outcome = { what: JSON.stringify(c.argv), code: r.code, stderr: r.stderr, changed: false };
        }
        outcome.changed = outcome.code !== 0 && project.stateDigest() !== digest;
        outcomes.inProcess.push(outcome);
        return !bad(outcome) && !outcome.changed;
      }),
      { seed: fuzzSeed, numRuns: inProcessRuns, endOnFailure: true },
    );
    fs.rmSync(path.join(stackDir(), "v9.yaml"), { force: true });
    assert.equal(report(outcomes.inProcess), "");
  });

  it(`runs ${cliRefusals} generated files and command lines through the real CLI, and deploys valid ones for real`, async () => {
    const lines: string[][] = fc.sample(argList, { seed: fuzzSeed + 2, numRuns: Math.round(cliRefusals * 0.15) });
    const files: VersionCase[] = fc.sample(versionCase("VNAME"), { seed: fuzzSeed + 1, numRuns: cliRefusals * 2 });
    const { PULUMI_CONFIG_PASSPHRASE: _, ...withoutPassphrase } = project.env;
    const verbs = (name: string) => [
      ["deploy", "--stack", "dev", "--version", name, "--yes"],
      ["preview", "--stack", "dev", "--version", name],
      ["rollback", "--stack", "dev", "--to", name, "--yes", "--json"],
    ];
    // Files the library accepts would apply; they run below, one at a time, where their change is expected.
    const loads = async (name: string) => {
      try {
        const ctx = await openEnvironment({ stack: "dev", projectDir: project.dir, passphrase: { value: demoPassphrase }, actor: "fuzz" });
        ctx.store.version(ctx.stack, name);
        return true;
      } catch {
        return false;
      }
    };
    const refusals: Array<{ what: string; argv: string[]; env?: NodeJS.ProcessEnv; file?: string }> = [];
    const accepted: VersionCase[] = [];
    for (const [i, f] of files.entries()) {
      if (refusals.length >= cliRefusals - lines.length) break;
      const name = `v${100 + i}`;
      const file = path.join(stackDir(), `${name}.yaml`);
      fs.writeFileSync(file, f.text.replace(/VNAME/g, name));
      if (await loads(name)) {
        accepted.push(f);
        fs.rmSync(file);
        continue;
      }
      refusals.push({ what: f.kind, argv: verbs(name)[i % 3], file });
    }
    // A process's arguments cannot hold NUL bytes; in-process runs had them.
    for (const argv of lines) refusals.push({ what: "argument list", argv: argv.map((a) => a.replace(/\0/g, "")), env: withoutPassphrase });

    // Refusals touch nothing, so a few run at once; the digest must not move during any of them.
    const started = Date.now();
    const before = project.stateDigest();
    const queue = [...refusals];
    const worker = async () => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        const r = await project.cli(c.argv, c.env ? { env: c.env } : {});
        outcomes.cli.push({ what: `${c.argv.join(" ")} (${c.what})`, code: r.code, stderr: r.stderr, changed: r.code !== 0 && project.stateDigest() !== before });
        if (c.file) fs.rmSync(c.file, { force: true });
      }
    };
    await Promise.all([worker(), worker(), worker()]);

    const refusing = Date.now() - started;

    // Files validation accepted must be ones the program takes: whatever it would reject must have been
    // caught before. Generated files that passed validation are previewed (the program runs, nothing
    // changes); valid-by-construction ones are deployed for real (the backend changes, they must succeed).
    const previews = [...accepted, ...fc.sample(deployableVersion("VNAME"), { seed: fuzzSeed + 3, numRuns: 4 })].slice(0, 4);
    const deploys = fc.sample(deployableVersion("VNAME"), { seed: fuzzSeed + 4, numRuns: 2 });
    for (const [i, f] of [...previews, ...deploys].entries()) {
      const name = `v${300 + i}`;
      project.writeVersion(name, f.text.replace(/VNAME/g, name));
      const deploy = i >= previews.length;
      const digest = project.stateDigest();
      const r = await project.cli(deploy ? ["deploy", "--stack", "dev", "--version", name, "--yes", "--json"] : ["preview", "--stack", "dev", "--version", name, "--json"]);
      const changed = project.stateDigest() !== digest;
      outcomes.cli.push({
        what: `${deploy ? "deploy" : "preview"} ${name} (${f.kind}: ${f.text.replace(/\n/g, " ")})`,
        code: r.code,
        stderr: r.stderr,
        changed: r.code !== 0 && changed,
        problem: r.code !== 0 ? "validation accepted the file, the engine did not" : !deploy && changed ? "a preview changed the backend" : undefined,
      });
      if (deploy && r.code === 0) assert.equal(json(r).to, name);
    }
    process.stderr.write(`      [figures] fuzz timing: ${refusals.length} refusals through the CLI in ${(refusing / 1000).toFixed(0)} s, ${previews.length} previews and ${deploys.length} deploys in ${((Date.now() - started - refusing) / 1000).toFixed(0)} s\n`);
    assert.ok(outcomes.cli.length >= cliRefusals, `only ${outcomes.cli.length} cases ran through the CLI`);
    assert.equal(report(outcomes.cli), "");
  });
});
