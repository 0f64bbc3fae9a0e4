import { strict as assert } from "node:assert";
import { redact, secretValuesOf } from "../../lib/verify/redact";
import { smokeEnvironment } from "../../lib/verify/verification";

describe("what is recorded of a smoke command's output", () => {
  it("finds credentials in an environment by their variable's name, not by their value", () => {
    const found = secretValuesOf({
      PULUMI_CONFIG_PASSPHRASE: "correct horse",
      AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG",
      AWS_ACCESS_KEY_ID: "AKIAIOSFODNN7EXAMPLE",
      VAULT_TOKEN: "hvs.abcdefghijklmnopqrstuvwxyz",
      GITHUB_TOKEN: "short",
      REGION: "eu-west-1",
      HOME: "/home/alice",
    });
    assert.deepEqual(found.sort(), ["AKIAIOSFODNN7EXAMPLE", "correct horse", "hvs.abcdefghijklmnopqrstuvwxyz", "wJalrXUtnFEMI/K7MDENG"]);
  });

  it("replaces known values and credential shapes, and caps the text", () => {
    const text = "pass=correct horse key=AKIAIOSFODNN7EXAMPLE auth: Bearer abc.def.ghi123 password=hunter22 region=eu-west-1";
    assert.equal(
      redact(text, ["correct horse"], 1000),
      "pass=[redacted] key=[redacted] auth: [redacted] password=[redacted] region=eu-west-1",
    );
    const long = redact("x".repeat(5000), [], 2048);
    assert.equal(long, `${"x".repeat(2048)}… (2952 more characters not kept)`);
  });

  it("gives a smoke command the base variables, ENDPOINT and the ones the version names, nothing else", () => {
    const env = smokeEnvironment(
      { PATH: "/usr/bin", HOME: "/home/alice", PULUMI_CONFIG_PASSPHRASE: "p", AWS_SECRET_ACCESS_KEY: "s", SMOKE_REGION: "eu" },
      ["SMOKE_REGION", "NOT_SET"],
      "http://127.0.0.1:1234",
    );
    assert.deepEqual(env, { PATH: "/usr/bin", HOME: "/home/alice", SMOKE_REGION: "eu", ENDPOINT: "http://127.0.0.1:1234" });
  });
});
