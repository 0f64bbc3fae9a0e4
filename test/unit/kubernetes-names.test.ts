import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ExitCode, InvalidVersionFileError } from "../../lib/errors";
import { VersionStore } from "../../lib/versions/store";
import { builtinPrograms } from "../../programs";
import { kubernetesSecretName } from "../../programs/kubernetes/schema";

describe("kubernetes secret names: what the API server accepts, checked when the version file is read", () => {
  let root: string;
  const stackYaml = "program: kubernetes\nproject: shop\nconfig:\n  target: { namespace: shop, app: shop, imageRepository: r.example/shop }\n";
  const version = (n: number, secrets: string) => `version: v${n}\nconfig: {}\nsecrets:\n${secrets}`;
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-unit-"));
    fs.mkdirSync(path.join(root, "prod"));
    const files: Record<string, string> = {
      "stack.yaml": stackYaml,
      "v1.yaml": version(1, "  apiKey: { generation: 1 }\n  db_password: { generation: 1 }\n"),
      "v2.yaml": version(2, "  apiKey: { generation: 1 }\n  api-key: { generation: 1 }\n"),
      "v3.yaml": version(3, "  key_: { generation: 1 }\n"),
    };
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(root, "prod", name), text);
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it("derives lowercase RFC 1123 names: apiKey -> api-key, db_password -> db-password", () => {
    assert.equal(kubernetesSecretName.parse("apiKey"), "api-key");
    assert.equal(kubernetesSecretName.parse("db_password"), "db-password");
    assert.equal(kubernetesSecretName.parse("TLSCert2"), "tlscert2");
    const store = new VersionStore(root, "stackpin", builtinPrograms);
    assert.deepEqual(Object.keys(store.version(store.stack("prod"), "v1").secrets), ["apiKey", "db_password"]);
  });

  it("refuses, with exit 5 naming the key, two secrets that would get one name and a name the API server refuses", () => {
    const store = new VersionStore(root, "stackpin", builtinPrograms);
    const prod = store.stack("prod");
    assert.throws(
      () => store.version(prod, "v2"),
      (e: unknown) => e instanceof InvalidVersionFileError && e.exitCode === ExitCode.invalidVersionFile && e.exitCode === 5 && /secrets\.api-key: the same object name \(api-key\) as secrets\.apiKey/.test(e.message),
    );
    assert.throws(
      () => store.version(prod, "v3"),
      (e: unknown) => e instanceof InvalidVersionFileError && /secrets\.key_: its Kubernetes name must be a lowercase RFC 1123 label/.test(e.message),
    );
  });
});
