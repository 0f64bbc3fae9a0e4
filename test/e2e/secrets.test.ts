import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import { json, pulumiOrSkip, TempProject, tempProject } from "./harness";
import { commandLines } from "./process-scan";
import { startVaultTransit, VaultTransit } from "./vault-transit";

/** Rewrites a YAML file of the project through `edit`. */
function editYaml(file: string, edit: (doc: any) => void) {
  const doc = parse(fs.readFileSync(file, "utf8"));
  edit(doc);
  fs.writeFileSync(file, stringify(doc));
}

describe("secrets: the stack's secrets provider is used, and secret values stay off command lines", function () {
  let project: TempProject;
  let vault: VaultTransit;
  let stackFile: string;
  let vaultEnv: NodeJS.ProcessEnv;
  // Made here, so it can only show up where stackpin or Pulumi put it.
  const token = `tok-${crypto.randomBytes(12).toString("hex")}`;

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    vault = await startVaultTransit();
    stackFile = path.join(project.dir, "stacks", "dev", "stack.yaml");
    // A stack whose secrets a Vault transit key protects: no passphrase, no salt, no passphrase ciphertexts.
    editYaml(stackFile, (doc) => {
      doc.secretsProvider = "hashivault://stackpin-e2e";
      delete doc.encryptionsalt;
    });
    for (const v of ["v1", "v2", "v3"]) editYaml(path.join(project.dir, "stacks", "dev", `${v}.yaml`), (doc) => delete doc.config.apiToken);
    vaultEnv = { PULUMI_CONFIG_PASSPHRASE: undefined, VAULT_ADDR: vault.address, VAULT_TOKEN: vault.token };
  });
  after(async () => {
    if (project) Object.assign(project.env, { PULUMI_CONFIG_PASSPHRASE: undefined, VAULT_ADDR: vault?.address, VAULT_TOKEN: vault?.token });
    await project?.teardown();
    await vault?.close();
  });

  it("refuses a secrets provider Pulumi would not use as written: exit 5 naming stack.yaml and the key, nothing created", async () => {
    const kept = fs.readFileSync(stackFile, "utf8");
    try {
      for (const provider of ["b64", "vault://stackpin-e2e", "default"]) {
        editYaml(stackFile, (doc) => (doc.secretsProvider = provider));
        const before = project.stateDigest();
        const r = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"], { env: vaultEnv });
        assert.equal(r.code, ExitCode.invalidVersionFile, r.stderr);
        assert.match(r.stderr, /stack\.yaml is invalid, nothing was changed/);
        assert.match(r.stderr, /secretsProvider: not a secrets provider stackpin can use: write passphrase, or a KMS key URL \(awskms:\/\/, gcpkms:\/\/, azurekeyvault:\/\/, hashivault:\/\/\)/);
        assert.equal(project.stateDigest(), before, "the backend changed");
      }
    } finally {
      fs.writeFileSync(stackFile, kept);
    }
  });

  it("secret set encrypts with the Vault key, and no process's command line ever holds the value", async () => {
    // Each time Pulumi's CLI asks Vault, it waits for the answer: look at every command line then.
    const seen: string[][] = [];
    const leaks: string[] = [];
    vault.beforeAnswer = () => {
      for (const c of commandLines()) {
        if (c.argv.some((a) => a.includes(token))) leaks.push(`${c.pid}: ${c.argv.join(" ")}`);
        if (c.argv.includes("config") && c.argv.includes("set")) seen.push(c.argv);
      }
    };
    let r;
    try {
      r = await project.cli(["secret", "set", "--stack", "dev", "--version", "v1", "--key", "apiToken"], { env: vaultEnv, input: `${token}\n` });
    } finally {
      vault.beforeAnswer = undefined;
    }
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.ok(seen.some((argv) => argv.includes("stackpin-demo:apiToken")), `the scan never saw Pulumi's config set running:\n${JSON.stringify(seen)}`);
    assert.deepEqual(leaks, [], "a command line held the secret");
    process.stderr.write(`      [figures] secret set: ${vault.requests.length} Vault requests, command lines scanned during each, ${seen.length} of them with pulumi config set, 0 holding the value\n`);
    const v1 = parse(fs.readFileSync(path.join(project.dir, "stacks", "dev", "v1.yaml"), "utf8"));
    assert.match(v1.config.apiToken.secure, /^v1:/);
    const settings = parse(fs.readFileSync(stackFile, "utf8"));
    assert.equal(settings.secretsProvider, "hashivault://stackpin-e2e");
    assert.match(Buffer.from(settings.encryptedkey, "base64").toString(), /^vault:v1:/, "Pulumi's data key is encrypted by Vault");
    assert.equal(settings.encryptionsalt, undefined, "no passphrase salt");
    for (const text of [r.stdout, r.stderr, fs.readFileSync(stackFile, "utf8"), fs.readFileSync(path.join(project.dir, "stacks", "dev", "v1.yaml"), "utf8")]) {
      assert.ok(!text.includes(token), "the value appears in plain text");
    }
  });

  it("deploys with the Vault key and no passphrase, and the program gets the secret", async () => {
    const asked = vault.requests.length;
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes", "--json"], { env: vaultEnv });
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.ok(!r.stdout.includes(token) && !r.stderr.includes(token));
    assert.ok(vault.requests.slice(asked).some((q) => q.op === "decrypt" && q.key === "stackpin-e2e"), "Pulumi asked Vault for the data key");
    const status = json(await project.cli(["status", "--stack", "dev", "--json"], { env: vaultEnv }));
    assert.equal(status.liveVersion, "v1");
    const tokenPath = status.outputs.tokenPath.value;
    assert.equal(fs.readFileSync(tokenPath, "utf8"), token, "the program decrypted what secret set encrypted");
  });

  it("an unreachable Vault or a refused token: exit 6 naming the provider and Vault's answer, nothing changed", async () => {
    for (const [env, said] of [
      [{ VAULT_ADDR: "http://127.0.0.1:9" }, /connection refused/],
      [{ VAULT_TOKEN: "not-the-token" }, /permission denied/],
    ] as const) {
      const before = project.stateDigest();
      const r = await project.cli(["deploy", "--stack", "dev", "--version", "v2", "--yes"], { env: { ...vaultEnv, ...env } });
      assert.equal(r.code, ExitCode.missingPassphrase, r.stderr);
      assert.match(r.stderr, /stack dev encrypts its secrets with hashivault:\/\/stackpin-e2e, and Pulumi could not use it: /);
      assert.match(r.stderr, said);
      assert.match(r.stderr, /VAULT_ADDR and VAULT_TOKEN\)\. Nothing was changed\./);
      assert.doesNotMatch(r.stderr, /PULUMI_CONFIG_PASSPHRASE/, "not a passphrase problem");
      assert.equal(project.stateDigest(), before, "the backend changed");
    }
  });

  it("passes a cloud KMS URL to Pulumi: AWS KMS without credentials exits 6 with AWS's answer, not a passphrase error", async () => {
    const kmsDir = path.join(project.dir, "stacks", "kms");
    fs.cpSync(path.join(project.dir, "stacks", "dev"), kmsDir, { recursive: true });
    editYaml(path.join(kmsDir, "stack.yaml"), (doc) => {
      doc.secretsProvider = "awskms://alias/shop?region=eu-west-1";
      delete doc.encryptedkey;
    });
    const before = project.stateDigest();
    // No credentials anywhere: no variables, no files, and no instance metadata to ask.
    const noAws = { PULUMI_CONFIG_PASSPHRASE: undefined, AWS_EC2_METADATA_DISABLED: "true", AWS_SHARED_CREDENTIALS_FILE: "/nonexistent", AWS_CONFIG_FILE: "/nonexistent" };
    const r = await project.cli(["deploy", "--stack", "kms", "--version", "v1", "--yes"], { env: noAws });
    try {
      assert.equal(r.code, ExitCode.missingPassphrase, r.stderr);
      assert.match(r.stderr, /stack kms encrypts its secrets with awskms:\/\/alias\/shop\?region=eu-west-1, and Pulumi could not use it: .*KMS: Encrypt.*get credentials/);
      assert.doesNotMatch(r.stderr, /PULUMI_CONFIG_PASSPHRASE/, "not a passphrase problem");
      assert.equal(project.stateDigest(), before, "the backend changed");
    } finally {
      fs.rmSync(kmsDir, { recursive: true, force: true });
    }
  });
});

describe("secrets: secret set on a passphrase stack keeps the value off command lines too", function () {
  let project: TempProject;
  let pulumiBin: string;
  const token = `tok-${crypto.randomBytes(12).toString("hex")}`;

  before(async function () {
    const pulumi = await pulumiOrSkip(this);
    pulumiBin = path.join(pulumi.root, "pulumi");
    project = tempProject(pulumi);
  });
  after(async () => project?.teardown());

  it("while Pulumi runs no command line holds the value; the deployed program gets it", async () => {
    // Every Pulumi process stackpin starts goes through a wrapper that, before running the real CLI, writes
    // down every command line on the machine at that moment (its own, which carries Pulumi's arguments,
    // included): each invocation is observed, whatever the machine's speed.
    const real = pulumiBin;
    const wrapperRoot = path.join(project.dir, "pulumi-watched");
    const log = path.join(project.dir, "command-lines.log");
    fs.mkdirSync(path.join(wrapperRoot, "bin"), { recursive: true });
    fs.writeFileSync(
      path.join(wrapperRoot, "bin", "pulumi"),
      `#!/bin/sh\n{ echo "=== pulumi $1 $2"; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < "$f" 2>/dev/null; echo; done; } >> '${log}'\nexec '${real}' "$@"\n`,
      { mode: 0o755 },
    );
    const r = await project.cli(["secret", "set", "--stack", "dev", "--version", "v1", "--key", "apiToken"], {
      env: { STACKPIN_PULUMI: wrapperRoot },
      input: `${token}\n`,
    });
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const scans = fs.readFileSync(log, "utf8").split("=== ").filter(Boolean);
    const configSet = scans.filter((scan) => /pulumi[^\n]* config set [^\n]*stackpin-demo:apiToken/.test(scan));
    assert.ok(configSet.length > 0, `the wrapper never saw Pulumi's config set run (${scans.length} invocations)`);
    assert.equal(scans.filter((scan) => scan.includes(token)).length, 0, "a command line held the secret");
    process.stderr.write(`      [figures] secret set (passphrase): ${scans.length} Pulumi invocations observed, ${configSet.length} of them config set, 0 command lines holding the value\n`);
    const v1 = fs.readFileSync(path.join(project.dir, "stacks", "dev", "v1.yaml"), "utf8");
    assert.ok(!v1.includes(token) && !r.stdout.includes(token) && !r.stderr.includes(token), "the value appears in plain text");

    const deployed = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"]);
    assert.equal(deployed.code, ExitCode.ok, deployed.stderr);
    const status = json(await project.cli(["status", "--stack", "dev", "--json"]));
    assert.equal(fs.readFileSync(status.outputs.tokenPath.value, "utf8"), token, "the program decrypted what secret set encrypted");
  });
});
