import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { InvalidVersionFileError, UnknownStackError, UnknownVersionError } from "../../lib/errors";
import { compareVersions, normalizeVersionName, VersionStore } from "../../lib/versions/store";

const roots: string[] = [];
after(() => roots.splice(0).forEach((r) => fs.rmSync(r, { recursive: true, force: true })));

function tempStacks(files: Record<string, string>): VersionStore {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-unit-"));
  roots.push(root);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), text);
  }
  return new VersionStore(root);
}

describe("version files", () => {
  it("orders versions by number, not by text", () => {
    assert.deepEqual(["v10", "v9", "v10.1", "v2"].sort(compareVersions), ["v2", "v9", "v10", "v10.1"]);
  });

  it("accepts 41, V41 and v41 for the same version", () => {
    assert.equal(normalizeVersionName("41"), "v41");
    assert.equal(normalizeVersionName("V41"), "v41");
    assert.equal(normalizeVersionName(" v41 "), "v41");
    assert.equal(normalizeVersionName("previous"), "previous");
  });

  it("lists a stack's versions oldest first and ignores other files", () => {
    const store = tempStacks({
      "prod/stack.yaml": "program: local\n",
      "prod/v10.yaml": "version: v10\nconfig: {}\n",
      "prod/v9.yaml": "version: v9\nconfig: {}\n",
      "prod/notes.md": "hi",
      "prod/draft.yaml": "version: v11\nconfig: {}\n",
    });
    const prod = store.stack("prod");
    assert.deepEqual(prod.versions, ["v9", "v10"]);
    assert.equal(prod.project, "stackpin");
    assert.equal(prod.settings.secretsProvider, "passphrase");
  });

  it("names the known stacks when a stack is unknown", () => {
    const store = tempStacks({ "prod/stack.yaml": "program: local\n", "staging/stack.yaml": "program: local\n" });
    assert.throws(() => store.stack("qa"), (e: unknown) => e instanceof UnknownStackError && /known: prod, staging/.test(e.message));
    assert.throws(() => store.stack("../prod"), UnknownStackError);
  });

  it("never takes . or .. for a stack, even where they reach a stack.yaml", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-unit-"));
    roots.push(root);
    fs.mkdirSync(path.join(root, "stacks", "prod"), { recursive: true });
    for (const f of ["stack.yaml", "stacks/stack.yaml", "stacks/prod/stack.yaml"]) fs.writeFileSync(path.join(root, f), "program: local\n");
    const store = new VersionStore(path.join(root, "stacks"));
    for (const name of [".", ".."]) assert.throws(() => store.stack(name), (e: unknown) => e instanceof UnknownStackError && /known: prod/.test(e.message), name);
    assert.equal(store.stack("prod").name, "prod");
  });

  it("refuses a version whose migration files are outside its stack's directory, naming the key", () => {
    const db = (up: string, down?: string) =>
      `version: v1\nconfig: {}\ndatabase:\n  schema: 1\n  migration: { name: m, up: ${up}${down ? `, down: ${down}` : ""} }\n  backwardCompatible: true\n`;
    const store = tempStacks({
      "outside.sql": "drop table items;",
      "prod/stack.yaml": "program: local\n",
      "prod/migrations/1.up.sql": "create table items();",
      "prod/v1.yaml": db("migrations/1.up.sql"),
      "prod/v2.yaml": db("migrations/1.up.sql", "../outside.sql").replace("v1", "v2"),
      "prod/v3.yaml": db("/etc/passwd").replace("v1", "v3"),
    });
    const prod = store.stack("prod");
    assert.equal(store.version(prod, "v1").database?.migration?.up, "migrations/1.up.sql");
    assert.throws(() => store.version(prod, "v2"), (e: unknown) => e instanceof InvalidVersionFileError && /database\.migration\.down: \.\.\/outside\.sql is outside the stack's directory/.test(e.message));
    assert.throws(() => store.version(prod, "v3"), (e: unknown) => e instanceof InvalidVersionFileError && /database\.migration\.up: \/etc\/passwd is outside/.test(e.message));
    fs.symlinkSync(path.join(prod.dir, "..", "outside.sql"), path.join(prod.dir, "migrations", "link.sql"));
    fs.writeFileSync(path.join(prod.dir, "v4.yaml"), db("migrations/link.sql").replace("v1", "v4"));
    assert.throws(() => store.version(store.stack("prod"), "v4"), /database\.migration\.up: migrations\/link\.sql is outside/);
  });

  it("names the known versions when a version is unknown", () => {
    const store = tempStacks({ "prod/stack.yaml": "program: local\n", "prod/v40.yaml": "version: v40\nconfig: {}\n" });
    const prod = store.stack("prod");
    assert.throws(
      () => store.version(prod, "v41"),
      (e: unknown) => e instanceof UnknownVersionError && e.message === "version v41 not found for stack prod; known: v40",
    );
  });

  it("reports malformed YAML with the file's name", () => {
    const store = tempStacks({ "prod/stack.yaml": "program: local\n", "prod/v1.yaml": "version: v1\nconfig:\n  a: [1,\n" });
    const prod = store.stack("prod");
    assert.throws(() => store.version(prod, "v1"), (e: unknown) => e instanceof InvalidVersionFileError && e.file.endsWith("v1.yaml"));
  });

  it("refuses duplicate keys, which YAML would otherwise silently merge", () => {
    const store = tempStacks({ "prod/stack.yaml": "program: local\n", "prod/v1.yaml": "version: v1\nconfig:\n  a: 1\n  a: 2\n" });
    assert.throws(() => store.version(store.stack("prod"), "v1"), InvalidVersionFileError);
  });

  it("refuses a version file whose version field names another version", () => {
    const store = tempStacks({ "prod/stack.yaml": "program: local\n", "prod/v2.yaml": "version: v1\nconfig: {}\n" });
    assert.throws(
      () => store.version(store.stack("prod"), "v2"),
      (e: unknown) => e instanceof InvalidVersionFileError && /says v1 but the file is v2.yaml/.test(e.message),
    );
  });

  it("refuses plain-text secrets and unknown fields, listing every problem", () => {
    const store = tempStacks({
      "prod/stack.yaml": "program: local\n",
      "prod/v1.yaml": "version: v1\nconfg: {}\nconfig:\n  db:\n    secret: hunter2\n  'bad key': 1\n",
    });
    assert.throws(
      () => store.version(store.stack("prod"), "v1"),
      (e: unknown) =>
        e instanceof InvalidVersionFileError &&
        e.problems.length >= 3 &&
        e.problems.some((p) => /confg/.test(p)) &&
        !e.message.includes("hunter2"),
    );
  });

  it("accepts secure values, structured config and namespaced keys", () => {
    const store = tempStacks({
      "prod/stack.yaml": "program: local\nproject: shop\n",
      "prod/v1.yaml":
        "version: v1\nconfig:\n  token:\n    secure: v1:abc\n  features:\n    beta: true\n  aws:region: eu-west-1\n  ports: [80, 443]\n",
    });
    const v1 = store.version(store.stack("prod"), "1");
    assert.deepEqual(v1.config.token, { secure: "v1:abc" });
    assert.equal(v1.config["aws:region"], "eu-west-1");
  });

  it("refuses a stack file naming no program", () => {
    const store = tempStacks({ "prod/stack.yaml": "project: shop\n" });
    assert.throws(() => store.stack("prod"), InvalidVersionFileError);
  });
});
