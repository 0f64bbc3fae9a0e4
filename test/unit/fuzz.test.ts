import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { openEnvironment } from "../../lib";
import { InvalidVersionFileError, StackpinError } from "../../lib/errors";
import { parseYamlInput, yamlLimits } from "../../lib/versions/yaml-input";
import { awsConfig } from "../../programs/aws/schema";
import { documentedCodes, fuzzSeed, hasStackTrace, stackFileCase, versionCase } from "./fuzz-cases";

/** A copy of `stacks/dev` in a temp directory; never deployed (these tests stop before the engine). */
function devCopy(): { dir: string; stackDir: string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-fuzz-unit-"));
  const stackDir = path.join(dir, "stacks", "dev");
  fs.cpSync(path.join(packageRoot(), "stacks", "dev"), stackDir, { recursive: true });
  return { dir, stackDir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Opens the stack and reads `version` as every operation does before touching the engine. */
async function load(dir: string, version: string) {
  const ctx = await openEnvironment({ stack: "dev", projectDir: dir, passphrase: { value: "unused" }, actor: "fuzz" });
  return ctx.store.version(ctx.stack, version);
}

async function refusal(dir: string, version: string): Promise<InvalidVersionFileError> {
  try {
    await load(dir, version);
  } catch (e) {
    if (e instanceof InvalidVersionFileError) return e;
    throw e;
  }
  assert.fail(`${version} was accepted`);
}

describe("version files are checked against the program's declared config", () => {
  let project: ReturnType<typeof devCopy>;
  beforeEach(() => (project = devCopy()));
  afterEach(() => project.remove());
  const write = (name: string, text: string) => fs.writeFileSync(path.join(project.stackDir, `${name}.yaml`), text);

  it("refuses a wrong-typed value, naming the key and the file", async () => {
    write("v9", "version: v9\nconfig:\n  message: hi\n  replicas: [1, 2]\n");
    const e = await refusal(project.dir, "v9");
    assert.equal(e.exitCode, 5);
    assert.ok(e.file.endsWith(path.join("dev", "v9.yaml")));
    assert.match(e.message, /config\.replicas: .*expected number, received array/);
  });

  it("refuses a version without the message the local program requires", async () => {
    write("v9", "version: v9\nconfig:\n  replicas: 2\n");
    assert.match((await refusal(project.dir, "v9")).message, /config\.message: required by program local/);
  });

  it("refuses an unknown key and suggests the setting it was probably meant to be", async () => {
    write("v9", "version: v9\nconfig:\n  message: hi\n  replica: 2\n");
    assert.match((await refusal(project.dir, "v9")).message, /config\.replica: not a setting of program local; did you mean replicas\?/);
  });

  it("refuses stackpin's own namespace and namespaces no provider of the program reads", async () => {
    write("v9", "version: v9\nconfig:\n  message: hi\n  stackpin:version: v1\n  aws:region: eu-west-1\n");
    const e = await refusal(project.dir, "v9");
    assert.ok(e.problems.some((p) => /^config\.stackpin:version: the stackpin namespace is set by stackpin/.test(p)));
    assert.ok(e.problems.some((p) => /^config\.aws:region: namespace "aws" is not used by program local/.test(p)));
  });

  it("treats the project's namespace as the program's own, and refuses the same setting written twice", async () => {
    write("v9", "version: v9\nconfig:\n  stackpin-demo:message: hi\n");
    assert.equal((await load(project.dir, "v9")).config["stackpin-demo:message"], "hi");
    write("v9", "version: v9\nconfig:\n  message: a\n  stackpin-demo:message: b\n");
    assert.match((await refusal(project.dir, "v9")).message, /the same setting as config\.message/);
  });

  it("refuses a __proto__ key instead of dropping it", async () => {
    write("v9", "version: v9\nconfig:\n  message: x\n  __proto__: { replicas: [1] }\n");
    assert.match((await refusal(project.dir, "v9")).message, /__proto__ is not a key/);
  });

  it("refuses paths that leave the stack's directory and artifacts that do not exist", async () => {
    write("v9", "version: v9\nconfig:\n  message: hi\n  dataDir: ../../escape\n  artifact: hello-9.9.9\n");
    const e = await refusal(project.dir, "v9");
    assert.ok(e.problems.some((p) => p.startsWith("config.dataDir:")));
    assert.ok(e.problems.some((p) => p.startsWith("config.artifact:")));
  });

  it("checks stack.yaml's config too, and a version completes it", async () => {
    fs.appendFileSync(path.join(project.stackDir, "stack.yaml"), "config:\n  drainMs: soon\n");
    await assert.rejects(openEnvironment({ stack: "dev", projectDir: project.dir, passphrase: { value: "x" } }), (e: unknown) => e instanceof InvalidVersionFileError && e.file.endsWith("stack.yaml") && /config\.drainMs/.test(e.message));
    fs.writeFileSync(path.join(project.stackDir, "stack.yaml"), "program: local\nproject: stackpin-demo\nconfig:\n  message: from stack.yaml\n");
    write("v9", "version: v9\nconfig:\n  replicas: 2\n");
    assert.equal((await load(project.dir, "v9")).config.replicas, 2);
  });

  it("lets a cloud program's provider keep its namespace (aws:region) and checks its target", () => {
    const shape = { target: { app: "shop", imageRepository: "r", vpcId: "vpc-1", subnetIds: ["subnet-a", "subnet-b"], securityGroupIds: ["sg-1"] } };
    assert.ok(awsConfig.schema.safeParse(shape).success);
    assert.ok(awsConfig.providerNamespaces.includes("aws"));
    assert.ok(!awsConfig.schema.safeParse({ target: { ...shape.target, app: "Shop_App" } }).success);
  });

  it("refuses YAML past its limits (aliases, depth, size) with exit 5, not an internal error", () => {
    const bomb = `a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n`;
    for (const [text, problem] of [
      [bomb, /too many aliases/],
      [`a: ${"[".repeat(yamlLimits.maxDepth + 1)}${"]".repeat(yamlLimits.maxDepth + 1)}`, /nested deeper than/],
      [`a: ${"[".repeat(5000)}${"]".repeat(5000)}`, /nested deeper than/],
      [`a: ${"x".repeat(yamlLimits.maxBytes)}`, /larger than/],
    ] as const) {
      assert.throws(() => parseYamlInput(text, "v9.yaml"), (e: unknown) => e instanceof InvalidVersionFileError && e.exitCode === 5 && problem.test(e.message));
    }
  });
});

describe("fuzz: the library's loading and validation never crash", function () {
  this.timeout(300_000);
  const runs = Number(process.env.STACKPIN_FUZZ_UNIT_RUNS ?? 1000);
  let project: ReturnType<typeof devCopy>;
  before(() => (project = devCopy()));
  after(() => project.remove());

  it(`loads ${runs} generated version and stack files: each is accepted or refused with a documented code, without a stack trace`, async () => {
    const stackFile = path.join(project.stackDir, "stack.yaml");
    const original = fs.readFileSync(stackFile, "utf8");
    const tally = { cases: 0, accepted: 0, refused: 0, crashes: 0 };
    const crashes: string[] = [];
    const arbitrary = fc.record({ version: versionCase("v9"), stack: fc.option(stackFileCase, { freq: 5 }) });
    await fc.assert(
      fc.asyncProperty(arbitrary, async ({ version, stack }) => {
        tally.cases++;
        fs.writeFileSync(stackFile, stack ? stack.text : original);
        fs.writeFileSync(path.join(project.stackDir, "v9.yaml"), version.text);
        try {
          await load(project.dir, "v9");
          tally.accepted++;
          return true;
        } catch (e) {
          const ok = e instanceof StackpinError && documentedCodes.has(e.exitCode) && !hasStackTrace(e.message);
          if (ok) tally.refused++;
          else {
            tally.crashes++;
            crashes.push(`${version.kind}${stack ? ` + ${stack.kind}` : ""}: ${(e as Error).stack}`);
          }
          return ok;
        }
      }),
      { seed: fuzzSeed, numRuns: runs, endOnFailure: true },
    );
    process.stderr.write(`      [figures] fuzz (library): seed ${fuzzSeed}, ${tally.cases} cases, ${tally.accepted} accepted, ${tally.refused} refused, crashes ${tally.crashes}\n`);
    assert.deepEqual(crashes, []);
    assert.ok(tally.accepted > runs / 20, `too few generated files are valid (${tally.accepted}): the generator no longer exercises the accepting path`);
  });
});
