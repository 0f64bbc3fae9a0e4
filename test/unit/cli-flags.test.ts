import { strict as assert } from "node:assert";
import { runCli } from "../../lib/cli/main";
import { ExitCode } from "../../lib/errors";

/** Runs the CLI in-process; flags are parsed before any stack is read, so no project is needed. */
async function cli(argv: string[]) {
  let stdout = "";
  let stderr = "";
  const code = await runCli(argv, { env: { PATH: process.env.PATH }, stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } });
  return { code, stdout, stderr };
}

describe("numeric flags are checked with the settings' zod schemas (exit 2, naming the flag)", () => {
  for (const [flag, value, message] of [
    ["--interval", "abc", /--interval must be a whole number of milliseconds, at least 50, not "abc"/],
    ["--interval", "", /--interval must be a whole number of milliseconds, at least 50, not ""/],
    ["--interval", "10", /--interval must be a whole number of milliseconds, at least 50, not "10"/],
    ["--interval", "1.5", /--interval must be a whole number/],
    ["--max-evaluations", "0", /--max-evaluations must be a whole number, at least 1, not "0"/],
    ["--max-evaluations", "many", /--max-evaluations must be a whole number, at least 1, not "many"/],
  ] as const) {
    it(`watch ${flag} ${JSON.stringify(value)}`, async () => {
      const r = await cli(["watch", "--stack", "dev", flag, value, "--json"]);
      assert.equal(r.code, ExitCode.usage, r.stderr);
      assert.match(r.stderr, message);
      assert.equal(JSON.parse(r.stdout).error.code, "usage");
    });
  }
});
