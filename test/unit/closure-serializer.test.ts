import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { packageRoot } from "../../lib/engine/pulumi-cli";

/** Runs `body` in a fresh Node process (a module registry of its own) after deferring the serializer, and parses what it prints. */
function inFreshProcess(body: string): any {
  const hook = path.join(packageRoot(), "dist", "lib", "engine", "closure-serializer.js");
  const script = `require(${JSON.stringify(hook)}).deferClosureSerializer();\nconst loaded = (name) => Object.keys(require.cache).some((f) => f.includes(name));\n${body}`;
  return JSON.parse(execFileSync(process.execPath, ["-e", script], { cwd: packageRoot(), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));
}

describe("loading the Pulumi SDK without its closure serializer until it is called", function () {
  this.timeout(60_000);

  it("loads @pulumi/pulumi and the Automation API without TypeScript or npm's arborist", () => {
    const r = inFreshProcess(`
      require("@pulumi/pulumi"); require("@pulumi/pulumi/automation");
      console.log(JSON.stringify({ typescript: loaded("/typescript/"), arborist: loaded("/@npmcli/arborist/"), modules: Object.keys(require.cache).length }));`);
    assert.deepEqual({ typescript: r.typescript, arborist: r.arborist }, { typescript: false, arborist: false });
  });

  it("serializes a function as before, loading the serializer on that first call", () => {
    const r = inFreshProcess(`
      const pulumi = require("@pulumi/pulumi");
      const before = loaded("/runtime/closure/serializeClosure");
      const answer = 42;
      pulumi.runtime.serializeFunction(() => answer).then((f) => console.log(JSON.stringify({ before, after: loaded("/runtime/closure/serializeClosure"), text: f.text, paths: typeof pulumi.runtime.computeCodePaths })));`);
    assert.equal(r.before, false);
    assert.equal(r.after, true);
    assert.match(r.text, /exports\.handler = __f0;/);
    assert.match(r.text, /answer: 42/);
    assert.equal(r.paths, "function");
  });
});
