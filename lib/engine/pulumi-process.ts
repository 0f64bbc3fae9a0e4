import { spawn } from "node:child_process";
import { recordCall, subcommandOf, timingEnabled } from "./cli-timing";

/** A Pulumi CLI run of our own (not through the Automation API) that failed; carries what it printed. */
export class CliRunError extends Error {}

/** One run of the Pulumi CLI outside the Automation API. */
export interface PulumiRun {
  /** The `pulumi` binary. */
  binary: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Written to the CLI's stdin (a secret to encrypt travels here, never on the command line). */
  input?: string;
}

/**
 * Runs the Pulumi CLI once and resolves with what it printed on stdout; rejects with {@link CliRunError}
 * (what it printed on stderr, else stdout) when it exits non-zero. The one place stackpin spawns the CLI
 * itself; STACKPIN_DEBUG=timing counts each run like the Automation API's own.
 */
export function runPulumi(run: PulumiRun): Promise<string> {
  const started = performance.now();
  const result = new Promise<string>((resolve, reject) => {
    const child = spawn(run.binary, run.args, { cwd: run.cwd, env: run.env, stdio: [run.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(stdout) : reject(new CliRunError(`pulumi ${subcommandOf(run.args)} exited ${code}:\n${stderr.trim() || stdout.trim()}`)),
    );
    if (run.input !== undefined) child.stdin!.end(run.input);
  });
  return timingEnabled() ? result.finally(() => recordCall(subcommandOf(run.args), performance.now() - started)) : result;
}
