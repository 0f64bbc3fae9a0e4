import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import { json, pulumiOrSkip, TempProject, tempProject } from "./harness";
import { makeSigners, Signers } from "./ssh-signers";

describe("signed approvals: only an approver's key approves, one exact plan, once", function () {
  let project: TempProject;
  let signers: Signers;
  let stackDir: string;
  let approvalA: string;
  let statementA: any;
  const refusals: string[] = [];

  const file = (name: string) => path.join(project.dir, name);
  const writeApproval = (name: string, doc: unknown) => {
    fs.writeFileSync(file(name), stringify(doc));
    return file(name);
  };
  /** A statement like A's with `changes`, signed for real by `signer`: what that key's owner could produce. */
  const signedVariant = (name: string, changes: Record<string, unknown>, signer: string) => {
    const statement = { ...statementA, ...changes };
    return writeApproval(name, { statement, signature: signers.sign(statement, signer) });
  };
  const rollbackV1 = (...extra: string[]) => ["rollback", "--stack", "dev", "--to", "v1", "--yes", ...extra];

  /** Runs a command that must be refused with exit 12 and `message`, the backend byte-for-byte unchanged. */
  async function refused(label: string, args: string[], message: RegExp, env?: NodeJS.ProcessEnv) {
    const digest = project.stateDigest();
    const r = await project.cli(args, { env });
    assert.equal(r.code, ExitCode.approvalRequired, `${label}: expected exit 12, got ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, message, label);
    assert.equal(project.stateDigest(), digest, `${label}: the refusal changed the backend`);
    refusals.push(label);
  }

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    signers = makeSigners(["alice", "bob", "mallory"]);
    stackDir = path.join(project.dir, "stacks", "dev");
    fs.mkdirSync(path.join(stackDir, "approvers"));
    fs.writeFileSync(path.join(stackDir, "approvers", "allowed_signers"), signers.allowedSigners(["alice", "bob"]));
    for (const v of ["v1", "v2"]) assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", v, "--yes"])).code, ExitCode.ok);
    const stackFile = path.join(stackDir, "stack.yaml");
    const doc = parse(fs.readFileSync(stackFile, "utf8"));
    doc.policy = { approvals: { require: ["rollback"], approvers: ["alice", "bob"], allowedSigners: "approvers/allowed_signers" } };
    fs.writeFileSync(stackFile, stringify(doc));
  });
  after(async () => {
    try {
      await project?.teardown();
    } finally {
      signers?.remove();
    }
    process.stderr.write(`      [figures] approvals: ${refusals.length} refusals tried, all exit 12 with the backend unchanged (${refusals.join("; ")})\n`);
  });

  it("approve shows the plan and its digest (the one preview shows), signs it with alice's key, and changes nothing", async () => {
    const digest = project.stateDigest();
    approvalA = file("approval-a.yaml");
    const r = await project.cli(["approve", "--stack", "dev", "--op", "rollback", "--to", "v1", "--key", signers.key("alice"), "--expires", "2h", "--out", approvalA, "--reason", "incident 7", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.match(r.stdout, /rollback v2 -> v1 on stack dev/);
    assert.match(r.stdout, /plan digest: sha256:[0-9a-f]{64} \(at revision 2; an approval signs this\)/);
    assert.match(r.stdout, /alice approved rollback v2 -> v1 on stack dev \(approval [0-9a-f-]{36}\)/);
    const written = parse(fs.readFileSync(approvalA, "utf8"));
    statementA = written.statement;
    assert.match(written.signature, /^-----BEGIN SSH SIGNATURE-----/);
    assert.equal(statementA.approver, "alice", "the approver is the key's principal in allowed_signers");
    assert.deepEqual([statementA.stack, statementA.operation, statementA.from, statementA.to, statementA.baseRevision, statementA.reason], ["dev", "rollback", "v2", "v1", 2, "incident 7"]);
    const expiresIn = Date.parse(statementA.expiresAt) - Date.parse(statementA.issuedAt);
    assert.equal(expiresIn, 2 * 3600_000);
    const preview = json(await project.cli(["preview", "--stack", "dev", "--to", "v1", "--json"]));
    assert.equal(preview.planDigest, statementA.planDigest, "an approver can compare the digest with a preview's");
    assert.equal(project.stateDigest(), digest, "approving changed the backend");
  });

  it("refuses a rollback without an approval, with an unsigned one, and with --approve NAME", async () => {
    await refused("no approval", rollbackV1(), /this rollback on stack dev needs explicit approval: re-run with --approval-file FILE, an approval signed by one of alice, bob \(`stackpin approve --stack dev --op rollback --to v1 --key KEY`\)/);
    const legacy = writeApproval("unsigned-legacy.yaml", { approvedBy: "alice", stack: "dev", operations: ["rollback"] });
    await refused("unsigned (old format)", rollbackV1("--approval-file", legacy), /unsigned-legacy\.yaml: not signed: an unsigned approval proves nothing \(anyone can write one\)/);
    const stripped = writeApproval("unsigned-statement.yaml", { statement: statementA });
    await refused("unsigned (signature removed)", rollbackV1("--approval-file", stripped), /unsigned-statement\.yaml: not signed: it has no SSH signature/);
    await refused("--approve NAME", rollbackV1("--approve", "alice"), /--approve alice proves nothing: stack dev's approvers sign their approvals/);
  });

  it("refuses an approval signed by a key not in allowed_signers, or by one approver's key in another's name", async () => {
    const outsider = signedVariant("mallory.yaml", { approver: "mallory" }, "mallory");
    await refused("key not in allowed signers", rollbackV1("--approval-file", outsider), /mallory\.yaml: signed by a key that is not in the allowed signers .*allowed_signers \(ED25519 key SHA256:/);
    const forged = signedVariant("bob-as-alice.yaml", {}, "bob");
    await refused("an approver's key for another approver", rollbackV1("--approval-file", forged), /bob-as-alice\.yaml: signed with the key of bob, but it names alice as the approver/);
    await refused(
      "approve with a key not in allowed signers",
      ["approve", "--stack", "dev", "--op", "rollback", "--to", "v1", "--key", signers.key("mallory"), "--out", file("never.yaml"), "--yes"],
      /cannot approve on stack dev: the approval would be refused: signed by a key that is not in the allowed signers/,
    );
    assert.equal(fs.existsSync(file("never.yaml")), false);
  });

  it("refuses an approval altered after it was signed", async () => {
    const doc = parse(fs.readFileSync(approvalA, "utf8"));
    doc.statement.expiresAt = "2099-01-01T00:00:00.000Z";
    const altered = writeApproval("altered.yaml", doc);
    await refused("altered after signing", rollbackV1("--approval-file", altered), /altered\.yaml: altered after it was signed: the signature does not match the statement/);
  });

  it("refuses a genuine approval of another stack, operation or version, and an expired one", async () => {
    const otherStack = signedVariant("other-stack.yaml", { stack: "prod" }, "alice");
    await refused("for another stack", rollbackV1("--approval-file", otherStack), /other-stack\.yaml: for stack prod, not dev/);
    const deployApproval = file("deploy-v1.yaml");
    const r = await project.cli(["approve", "--stack", "dev", "--op", "deploy", "--to", "v1", "--key", signers.key("alice"), "--out", deployApproval, "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.match(r.stdout, /stack dev's policy does not require an approval for this deploy/);
    await refused("for another operation", rollbackV1("--approval-file", deployApproval), /deploy-v1\.yaml: for a deploy, not a rollback/);
    const otherVersion = signedVariant("other-version.yaml", { to: "v2" }, "alice");
    await refused("for another version", rollbackV1("--approval-file", otherVersion), /other-version\.yaml: for rollback to v2, not to v1/);
    const expired = signedVariant("expired.yaml", { issuedAt: "2026-01-01T00:00:00.000Z", expiresAt: "2026-01-01T01:00:00.000Z" }, "alice");
    await refused("expired", rollbackV1("--approval-file", expired), /expired\.yaml: expired at 2026-01-01T01:00:00\.000Z/);
  });

  it("an edited version file changes nothing an approved rollback applies; a changed stack config voids the approval", async () => {
    // The rollback re-applies what ran: the edit is shown, and the plan (and its digest) stay the approved ones.
    const v1 = path.join(stackDir, "v1.yaml");
    const originalV1 = fs.readFileSync(v1, "utf8");
    const doc = parse(originalV1);
    doc.config.message = `${doc.config.message} (edited after approval)`;
    fs.writeFileSync(v1, stringify(doc));
    const stackFile = path.join(stackDir, "stack.yaml");
    const originalStack = fs.readFileSync(stackFile, "utf8");
    try {
      const preview = json(await project.cli(["preview", "--stack", "dev", "--to", "v1", "--json"]));
      assert.equal(preview.planDigest, statementA.planDigest, "an edited file is not what the rollback applies");
      assert.ok(preview.warnings.some((w: string) => /^v1\.yaml differs from what ran/.test(w)));
      // A stack-level setting from stack.yaml is applied as it is now: changing it changes the plan.
      const stack = parse(originalStack);
      stack.config = { ...(stack.config ?? {}), drainMs: 500 };
      fs.writeFileSync(stackFile, stringify(stack));
      await refused("the plan changed (stack config edited)", rollbackV1("--approval-file", approvalA), /approval-a\.yaml: the plan changed since it was approved: alice approved plan sha256:[0-9a-f]{12}…, the plan now is sha256:/);
    } finally {
      fs.writeFileSync(v1, originalV1);
      fs.writeFileSync(stackFile, originalStack);
    }
  });

  it("refuses an attacker's key added to allowed_signers in the repo when the deploy machine keeps its own list", async () => {
    const machineList = path.join(signers.dir, "machine_allowed_signers");
    fs.writeFileSync(machineList, signers.allowedSigners(["alice", "bob"]));
    const repoList = path.join(stackDir, "approvers", "allowed_signers");
    const stackFile = path.join(stackDir, "stack.yaml");
    const [listBefore, stackBefore] = [fs.readFileSync(repoList, "utf8"), fs.readFileSync(stackFile, "utf8")];
    // What someone with write access to the repository, but no approver's key, can change.
    fs.appendFileSync(repoList, signers.allowedSigners(["mallory"]));
    const doc = parse(stackBefore);
    doc.policy.approvals.approvers.push("mallory");
    fs.writeFileSync(stackFile, stringify(doc));
    try {
      const own = signedVariant("mallory-own.yaml", { approver: "mallory" }, "mallory");
      await refused(
        "attacker's key added to the repo's allowed_signers",
        rollbackV1("--approval-file", own),
        /mallory-own\.yaml: signed by a key that is not in the allowed signers .*machine_allowed_signers/,
        { STACKPIN_ALLOWED_SIGNERS: machineList },
      );
    } finally {
      fs.writeFileSync(repoList, listBefore);
      fs.writeFileSync(stackFile, stackBefore);
    }
  });

  it("runs the approved rollback and keeps who approved it in history, the incident record and the audit trail", async () => {
    const r = await project.cli(rollbackV1("--approval-file", approvalA, "--json"));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const result = json(r);
    assert.match(result.approvals[0], new RegExp(`^alice \\(signed approval ${statementA.id}, approval-a\\.yaml, until ${statementA.expiresAt}\\)$`));
    const [newest] = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.deepEqual([newest.op, newest.from, newest.to, newest.approvals], ["rollback", "v2", "v1", [{ id: statementA.id, approver: "alice" }]]);
    const incident = JSON.parse(fs.readFileSync(result.incident.json, "utf8"));
    assert.deepEqual(incident.approvals, result.approvals);
    const audit = json(await project.cli(["audit", "show", "--stack", "dev", "--json"]));
    assert.match(audit.entries.at(-1).detail, new RegExp(`approved by alice \\(signed approval ${statementA.id}`));
  });

  it("refuses the same approval again as a replay, even after the stack is back where it was approved", async () => {
    assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", "v2", "--yes"])).code, ExitCode.ok);
    await refused("replayed after use", rollbackV1("--approval-file", approvalA), new RegExp(`approval-a\\.yaml: already used: approval ${statementA.id} by alice was used by revision 3 \\(rollback v2 -> v1\\)`));
  });

  it("refuses an approval once the stack moved after it was signed", async () => {
    const approvalB = file("approval-b.yaml");
    let r = await project.cli(["approve", "--stack", "dev", "--op", "rollback", "--to", "v1", "--key", signers.key("bob"), "--out", approvalB, "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    r = await project.cli(["deploy", "--stack", "dev", "--version", "v2", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    await refused("the plan changed (the stack moved)", rollbackV1("--approval-file", approvalB), /approval-b\.yaml: the plan changed since it was approved: it was approved at revision 4 and the stack is now at revision 5/);
  });
});

describe("a machine policy pins what needs approval on the deploy machine: stack.yaml adds to it, never removes", function () {
  let project: TempProject;
  let signers: Signers;
  let machineDir: string;
  let stackFile: string;
  /** The deploy machine's environment: its own policy, kept outside the repository. */
  let onMachine: NodeJS.ProcessEnv;
  const refusals: string[] = [];

  const writeStackPolicy = (approvals: unknown) => {
    const doc = parse(fs.readFileSync(stackFile, "utf8"));
    doc.policy = { approvals };
    fs.writeFileSync(stackFile, stringify(doc));
  };

  /** Runs a command that must be refused with `code` and `message`, the backend byte-for-byte unchanged. */
  async function refused(label: string, args: string[], code: number, message: RegExp, env: NodeJS.ProcessEnv = onMachine) {
    const digest = project.stateDigest();
    const r = await project.cli(args, { env });
    assert.equal(r.code, code, `${label}: expected exit ${code}, got ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, message, label);
    assert.equal(project.stateDigest(), digest, `${label}: the refusal changed the backend`);
    refusals.push(label);
    return r;
  }

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    signers = makeSigners(["alice", "mallory"]);
    machineDir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-machine-"));
    fs.writeFileSync(path.join(machineDir, "allowed_signers"), signers.allowedSigners(["alice"]));
    fs.writeFileSync(path.join(machineDir, "policy.yaml"), stringify({ approvals: { require: ["deploy"], allowedSigners: "allowed_signers" } }));
    onMachine = { STACKPIN_MACHINE_POLICY: path.join(machineDir, "policy.yaml") };
    stackFile = path.join(project.dir, "stacks", "dev", "stack.yaml");
    assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"])).code, ExitCode.ok);
    // What someone who can push to the repository, but holds no approver's key, does: delete `require`,
    // and add their own key to the repository's allowed signers.
    fs.mkdirSync(path.join(project.dir, "stacks", "dev", "approvers"));
    fs.writeFileSync(path.join(project.dir, "stacks", "dev", "approvers", "allowed_signers"), signers.allowedSigners(["mallory"]));
    writeStackPolicy({ allowedSigners: "approvers/allowed_signers" });
  });
  after(async () => {
    try {
      await project?.teardown();
    } finally {
      signers?.remove();
      if (machineDir) fs.rmSync(machineDir, { recursive: true, force: true });
    }
    process.stderr.write(`      [figures] machine policy: ${refusals.length} refusals tried, each with the backend unchanged (${refusals.join("; ")})\n`);
  });

  it("refuses a deploy the machine requires approval for after stack.yaml's require was deleted, and deploys with a signed approval", async () => {
    const deployV2 = (...extra: string[]) => ["deploy", "--stack", "dev", "--version", "v2", "--yes", ...extra];
    const machineSigners = path.join(machineDir, "allowed_signers");
    await refused(
      "deploy without approval",
      deployV2(),
      ExitCode.approvalRequired,
      new RegExp(
        `this deploy \\(required by the machine policy ${machineDir}/policy\\.yaml\\) on stack dev needs explicit approval: ` +
          `re-run with --approval-file FILE, an approval signed by a principal of ${machineSigners} `,
      ),
    );
    await refused("unsigned --approve NAME", deployV2("--approve", "alice"), ExitCode.approvalRequired, /--approve alice proves nothing: this machine \(.*policy\.yaml\) takes only approvals signed with `stackpin approve`/);
    // Elsewhere, where the repository's allowed signers are trusted, mallory's own key makes an approval…
    const mallorys = path.join(project.dir, "mallory.yaml");
    const r = await project.cli(["approve", "--stack", "dev", "--op", "deploy", "--to", "v2", "--key", signers.key("mallory"), "--out", mallorys, "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    // …that counts for nothing on the machine, which checks its own list.
    await refused("a key from the repository's allowed signers", deployV2("--approval-file", mallorys), ExitCode.approvalRequired, new RegExp(`mallory\\.yaml: signed by a key that is not in the allowed signers ${machineSigners}`));

    const alices = path.join(project.dir, "alice.yaml");
    const a = await project.cli(["approve", "--stack", "dev", "--op", "deploy", "--to", "v2", "--key", signers.key("alice"), "--out", alices, "--yes"], { env: onMachine });
    assert.equal(a.code, ExitCode.ok, a.stderr);
    assert.match(a.stdout, new RegExp(`required here: deploy \\(by machine policy ${machineDir}/policy\\.yaml\\)`), "approve shows what the machine requires");
    const d = await project.cli(deployV2("--approval-file", alices, "--json"), { env: onMachine });
    assert.equal(d.code, ExitCode.ok, d.stderr);
    const [newest] = json(await project.cli(["history", "--stack", "dev", "--json"]));
    assert.deepEqual([newest.op, newest.to, newest.approvals.map((x: { approver: string }) => x.approver)], ["deploy", "v2", ["alice"]]);
  });

  it("requires both the machine's deploy and the rollback stack.yaml adds", async () => {
    writeStackPolicy({ require: ["rollback"] });
    const machineSigners = path.join(machineDir, "allowed_signers");
    await refused(
      "rollback stack.yaml requires",
      ["rollback", "--stack", "dev", "--to", "v1", "--yes"],
      ExitCode.approvalRequired,
      new RegExp(`this rollback on stack dev needs explicit approval: re-run with --approval-file FILE, an approval signed by a principal of ${machineSigners} `),
    );
    await refused("deploy the machine requires", ["deploy", "--stack", "dev", "--version", "v3", "--yes"], ExitCode.approvalRequired, /this deploy \(required by the machine policy .*policy\.yaml\) on stack dev needs explicit approval/);
    const r = await project.cli(["approve", "--stack", "dev", "--op", "rollback", "--to", "v1", "--key", signers.key("alice"), "--out", path.join(project.dir, "rollback.yaml"), "--yes", "--json"], { env: onMachine });
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.deepEqual(json(r).requirements, [{ category: "rollback", by: ["stack"] }]);
    assert.equal(json(r).machinePolicy, path.join(machineDir, "policy.yaml"));
  });

  it("refuses every command with exit 5 when the machine policy is malformed or missing, and changes nothing", async () => {
    const stackBefore = fs.readFileSync(stackFile, "utf8");
    const deployV3 = ["deploy", "--stack", "dev", "--version", "v3", "--yes", "--approve", "alice"];
    const bad = (name: string, text: string) => {
      fs.writeFileSync(path.join(machineDir, name), text);
      return { STACKPIN_MACHINE_POLICY: path.join(machineDir, name) };
    };
    const invalid = (problem: string) => new RegExp(`the machine policy ${machineDir}/\\S+ is invalid, nothing was changed[^\\n]*\\n  - ${problem}`);
    await refused("not YAML", deployV3, ExitCode.invalidVersionFile, invalid("Flow sequence"), bad("unparseable.yaml", "approvals:\n  require: [deploy\n"));
    await refused("a misspelt category", deployV3, ExitCode.invalidVersionFile, invalid("approvals\\.require\\.0: Invalid option"), bad("typo.yaml", "approvals:\n  require: [deploi]\n  allowedSigners: allowed_signers\n"));
    await refused("a misspelt key", deployV3, ExitCode.invalidVersionFile, invalid('Unrecognized key: "aprovals"'), bad("key.yaml", "aprovals:\n  require: [deploy]\n"));
    await refused("require without allowed signers", deployV3, ExitCode.invalidVersionFile, invalid("approvals\\.allowedSigners: a machine that requires approvals checks them against its own allowed signers"), bad("unsigned.yaml", "approvals:\n  require: [deploy]\n"));
    const absent = { STACKPIN_MACHINE_POLICY: path.join(machineDir, "absent.yaml") };
    const r = await refused("a file that is not there", [...deployV3, "--json"], ExitCode.invalidVersionFile, invalid("cannot be read \\(ENOENT\\)"), absent);
    assert.equal(json(r).error.code, "invalid-machine-policy");
    await refused("a fleet, before any preview", ["rollback", "--stacks", "dev", "--to", "v1", "--yes"], ExitCode.invalidVersionFile, invalid("cannot be read"), absent);
    await refused(
      "two allowed-signers files",
      deployV3,
      ExitCode.invalidVersionFile,
      invalid("approvals\\.allowedSigners: names \\S+, but STACKPIN_ALLOWED_SIGNERS names"),
      { ...onMachine, STACKPIN_ALLOWED_SIGNERS: signers.key("alice") },
    );
    assert.equal(fs.readFileSync(stackFile, "utf8"), stackBefore);
  });
});
