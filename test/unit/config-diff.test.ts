import { strict as assert } from "node:assert";
import { diffConfig, maskedSecret } from "../../lib/versions/config-diff";

describe("config diff", () => {
  it("shows added, removed and changed keys, sorted by key", () => {
    const changes = diffConfig({ a: "1", b: 2, c: true }, { b: 3, c: true, d: "new" });
    assert.deepEqual(changes, [
      { key: "a", kind: "removed", secret: false, before: "1" },
      { key: "b", kind: "changed", secret: false, before: 2, after: 3 },
      { key: "d", kind: "added", secret: false, after: "new" },
    ]);
  });

  it("goes into structured values key by key", () => {
    const changes = diffConfig({ features: { beta: false, search: true } }, { features: { beta: true, search: true, x: 1 } });
    assert.deepEqual(changes.map((c) => [c.key, c.kind]), [
      ["features.beta", "changed"],
      ["features.x", "added"],
    ]);
  });

  it("never carries a secret's ciphertext or value, only the mask", () => {
    const changes = diffConfig({ token: { secure: "v1:old" } }, { token: { secure: "v1:new" }, key: { secure: "v1:k" } });
    assert.deepEqual(changes, [
      { key: "key", kind: "added", secret: true, after: maskedSecret },
      { key: "token", kind: "changed", secret: true, before: maskedSecret, after: maskedSecret },
    ]);
    assert.ok(!JSON.stringify(changes).includes("v1:"));
  });

  it("reports nothing for identical configs, secrets included", () => {
    assert.deepEqual(diffConfig({ a: 1, t: { secure: "v1:x" } }, { a: 1, t: { secure: "v1:x" } }), []);
  });

  it("shows a value that turned into a secret as changed and masked", () => {
    assert.deepEqual(diffConfig({ t: "plain" }, { t: { secure: "v1:x" } }), [
      { key: "t", kind: "changed", secret: true, before: maskedSecret, after: maskedSecret },
    ]);
  });
});
