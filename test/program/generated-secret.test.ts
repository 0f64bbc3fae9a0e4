import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { builtProviderFile, GeneratedSecret, serializeProvider, valueProvider } from "../../programs/generated-secret";

// Internal to @pulumi/pulumi (not in its typings): every registration answered.
const { waitForRPCs } = require("@pulumi/pulumi/runtime/settings") as { waitForRPCs(): Promise<void> };

describe("GeneratedSecret: a dynamic resource whose provider was serialized when the package was built", function () {
  it("the build's text is what serializing this module's provider gives now", async () => {
    const built = JSON.parse(fs.readFileSync(builtProviderFile, "utf8")) as { sdk: string; text: string };
    assert.equal(built.sdk, (require("@pulumi/pulumi/package.json") as { version: string }).version);
    assert.equal(built.text, await serializeProvider());
  });

  it("registers what pulumi.dynamic.Resource registers for the same provider: type, inputs and __provider text", async () => {
    const seen: Record<string, { type: string; inputs: Record<string, unknown> }> = {};
    await pulumi.runtime.setMocks(
      {
        newResource: (args) => {
          seen[args.name] = { type: args.type, inputs: args.inputs };
          return { id: `${args.name}-id`, state: args.inputs };
        },
        call: (args) => args.inputs,
      },
      "project",
      "stack",
      false,
    );
    class Theirs extends pulumi.dynamic.Resource {}
    new Theirs(valueProvider, "theirs", { generation: 3, value: undefined }, { additionalSecretOutputs: ["value"] }, "stackpin", "GeneratedSecret");
    new GeneratedSecret("ours", { generation: 3 });
    await waitForRPCs();
    assert.equal(seen.ours.type, "pulumi-nodejs:dynamic/stackpin:GeneratedSecret");
    assert.deepEqual(seen.ours, seen.theirs);
    assert.equal(typeof seen.ours.inputs.__provider, "string");
  });
});
