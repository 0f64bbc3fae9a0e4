import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Command } from "commander";
import { buildCli, runCli } from "../../lib/cli/main";
import { commandPath } from "../../lib/cli/help-examples";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { ExitCode } from "../../lib/errors";

/** Runs the CLI in-process; `--help` and `--version` answer before any stack or Pulumi CLI is looked for. */
async function cli(argv: string[]) {
  let stdout = "";
  let stderr = "";
  const code = await runCli(argv, { env: { PATH: process.env.PATH }, stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } });
  return { code, stdout, stderr };
}

function commandsOf(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...commandsOf(c)]);
}

describe("the CLI's conventions", () => {
  it("stackpin --version (and -V) prints the package's version", async () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as { version: string };
    for (const flag of ["--version", "-V"]) {
      const r = await cli([flag]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
      assert.equal(r.stdout, `${version}\n`);
    }
  });

  it("a command's own --version is its own: preview --version v2 --to v1 is a usage error, not stackpin's version", async () => {
    const r = await cli(["preview", "--stack", "dev", "--version", "v2", "--to", "v1"]);
    assert.equal(r.code, ExitCode.usage);
    assert.match(r.stderr, /option '-v, --version <version>' cannot be used with option '-t, --to <version>'/);
  });

  const commands = commandsOf(buildCli({ PATH: process.env.PATH })).map(commandPath);
  it("there are commands to check", () => assert.ok(commands.length > 20, commands.join(", ")));
  for (const name of commands) {
    it(`stackpin ${name} --help ends with one example of the command`, async () => {
      const r = await cli([...name.split(" "), "--help"]);
      assert.equal(r.code, ExitCode.ok, r.stderr);
      const examples = r.stdout.split("\nExample:\n").slice(1);
      assert.equal(examples.length, 1, r.stdout);
      assert.match(examples[0], new RegExp(`^  \\$ (.*\\| )?stackpin ${name.split(" ")[0]}\\b`));
    });
  }
});
