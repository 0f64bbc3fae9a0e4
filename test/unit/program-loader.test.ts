import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ProgramLoadError } from "../../lib/errors";
import { isProgramPath, loadProgram } from "../../lib/engine/program-loader";

describe("a project's own program by path: what its module may export", () => {
  let dir = "";
  const write = (file: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), text);
  };
  const context = { stackName: "prod", stateDir: "/nonexistent" };

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-loader-"));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("tells paths from built-in names", () => {
    assert.deepEqual(["./infra/app", "../shared/app", "/srv/app", "local", "aws", "infra/app"].map(isProgramPath), [true, true, true, false, false, false]);
  });

  it("runs a default-exported program function, and a factory given the stack's context", async () => {
    write("plain/index.ts", "export default async () => ({ kind: 'plain' as const });\n");
    write("factory.ts", "import type { ProgramContext } from './types';\nexport default (ctx: ProgramContext) => async () => ({ kind: 'factory', stack: ctx.stackName });\n");
    write("types.ts", "export interface ProgramContext { stackName: string; stateDir: string }\n");
    assert.deepEqual(await loadProgram(dir, "./plain")(context)(), { kind: "plain" });
    assert.deepEqual(await loadProgram(dir, "./factory.ts")(context)(), { kind: "factory", stack: "prod" });
  });

  it("loads CommonJS JavaScript (module.exports = function) too", async () => {
    write("cjs/main.js", "module.exports = async function () { return { kind: 'cjs' }; };\n");
    write("cjs/package.json", JSON.stringify({ main: "main.js" }));
    assert.deepEqual(await loadProgram(dir, "./cjs")(context)(), { kind: "cjs" });
  });

  it("takes the config schema as a zod object or as { schema, providerNamespaces }", () => {
    write("schema-a.ts", "import { z } from 'zod';\nexport const config = z.object({ a: z.string() }).strict();\nexport default async () => {};\n");
    write("schema-b.ts", "import { z } from 'zod';\nexport const config = { schema: z.object({ b: z.number() }).strict(), providerNamespaces: ['aws'] };\nexport default async () => {};\n");
    const a = loadProgram(dir, "./schema-a").config!;
    assert.deepEqual(Object.keys(a.schema.shape), ["a"]);
    assert.deepEqual(a.providerNamespaces, []);
    const b = loadProgram(dir, "./schema-b").config!;
    assert.deepEqual(Object.keys(b.schema.shape), ["b"]);
    assert.deepEqual(b.providerNamespaces, ["aws"]);
    write("schema-c.ts", "export const config = { port: 'number' };\nexport default async () => {};\n");
    assert.throws(() => loadProgram(dir, "./schema-c"), (e: unknown) => e instanceof ProgramLoadError && /neither a zod object/.test(e.message) && e.exitCode === 5);
  });

  it("names what is wrong: no module, no default export, a syntax error, a failing import", () => {
    write("nodefault.ts", "export const x = 1;\n");
    write("syntax.ts", "export default async () => {\n  return {;\n};\n");
    write("throws.ts", "import './missing-helper';\nexport default async () => {};\n");
    const cases: [string, RegExp][] = [
      ["./nowhere", /no module at .*nowhere/],
      ["./nodefault", /has no default export function/],
      ["./syntax", /syntax\.ts:2:\d+: /],
      ["./throws", /loading .*throws\.ts failed: Cannot find module '\.\/missing-helper'/],
    ];
    for (const [program, message] of cases) {
      assert.throws(() => loadProgram(dir, program), (e: unknown) => e instanceof ProgramLoadError && message.test(e.message), program);
    }
  });
});
