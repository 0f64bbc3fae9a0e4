import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { approvalsNeeded, mergeApprovalPolicies } from "../../lib/policy/approvals";
import { ExitCode, InvalidMachinePolicyError } from "../../lib/errors";
import { checkMachinePolicy, MachinePolicy, readMachinePolicy } from "../../lib/policy/machine-policy";
import { approvalCategorySchema, ApprovalCategory, Policy } from "../../lib/versions/schema";

const stackDir = "/repo/stacks/prod";
const machine = (approvals: Partial<MachinePolicy["approvals"]>): MachinePolicy =>
  checkMachinePolicy({ source: "/etc/stackpin/policy.yaml", approvals });
const stack = (approvals: Partial<NonNullable<Policy["approvals"]>>): Policy["approvals"] => ({ require: [], approvers: [], ...approvals });

describe("the approval policy in force: the machine sets the minimum, the stack adds", () => {
  it("without a machine policy, is the stack's (allowed signers relative to the stack's directory)", () => {
    const p = mergeApprovalPolicies(undefined, stack({ require: ["rollback"], approvers: ["alice"], allowedSigners: "approvers/allowed_signers" }), stackDir);
    assert.deepEqual(p, {
      require: [{ category: "rollback", by: ["stack"] }],
      approvers: ["alice"],
      approversFrom: "stack",
      allowedSigners: "/repo/stacks/prod/approvers/allowed_signers",
      allowedSignersFrom: "stack",
      signed: true,
    });
  });

  it("keeps what the machine requires when stack.yaml has no approvals section at all", () => {
    const p = mergeApprovalPolicies(machine({ require: ["deploy"], allowedSigners: "/etc/stackpin/allowed_signers" }), undefined, stackDir);
    assert.deepEqual(p.require, [{ category: "deploy", by: ["machine"] }]);
    assert.equal(p.allowedSigners, "/etc/stackpin/allowed_signers");
    assert.equal(p.signed, true, "what a machine requires takes only signed approvals");
    assert.equal(p.machine, "/etc/stackpin/policy.yaml");
  });

  it("requires the union, in a fixed order, saying whose policy requires each", () => {
    const p = mergeApprovalPolicies(
      machine({ require: ["restore", "deploy"], allowedSigners: "/etc/stackpin/allowed_signers" }),
      stack({ require: ["rollback", "deploy"] }),
      stackDir,
    );
    assert.deepEqual(p.require, [
      { category: "deploy", by: ["machine", "stack"] },
      { category: "rollback", by: ["stack"] },
      { category: "restore", by: ["machine"] },
    ]);
  });

  it("requires exactly the union of both for any choice of either: a stack never removes what the machine requires", () => {
    const categories = fc.subarray([...approvalCategorySchema.options]);
    fc.assert(
      fc.property(categories, categories, (m: ApprovalCategory[], s: ApprovalCategory[]) => {
        const p = mergeApprovalPolicies(machine({ require: m, allowedSigners: "/etc/s" }), stack({ require: s }), stackDir);
        const got = p.require.map((r) => r.category);
        assert.deepEqual(new Set(got), new Set([...m, ...s]));
        for (const r of p.require) {
          assert.equal(r.by.includes("machine"), m.includes(r.category));
          assert.equal(r.by.includes("stack"), s.includes(r.category));
        }
      }),
    );
  });

  it("checks against the machine's allowed signers, never the repository's, when the machine names them", () => {
    const p = mergeApprovalPolicies(machine({ allowedSigners: "/etc/stackpin/allowed_signers" }), stack({ approvers: ["mallory"], allowedSigners: "approvers/allowed_signers" }), stackDir);
    assert.equal(p.allowedSigners, "/etc/stackpin/allowed_signers");
    assert.equal(p.allowedSignersFrom, "machine");
    // The stack's approvers still apply, but only narrow: each must hold a key in the machine's file.
    assert.deepEqual([p.approvers, p.approversFrom], [["mallory"], "stack"]);
  });

  it("takes the machine's approvers over the stack's, so a stack cannot widen who approves", () => {
    const p = mergeApprovalPolicies(
      machine({ require: ["deploy"], approvers: ["alice"], allowedSigners: "/etc/stackpin/allowed_signers" }),
      stack({ approvers: ["alice", "mallory"], allowedSigners: "approvers/allowed_signers" }),
      stackDir,
    );
    assert.deepEqual([p.approvers, p.approversFrom], [["alice"], "machine"]);
  });

  it("takes unsigned --approve NAME only when neither policy names allowed signers", () => {
    assert.equal(mergeApprovalPolicies(undefined, stack({ require: ["deploy"] }), stackDir).signed, false);
    assert.equal(mergeApprovalPolicies(machine({}), stack({ require: ["deploy"] }), stackDir).signed, false, "an empty machine policy changes nothing");
  });

  it("asks of an apply only the categories it falls under", () => {
    const p = mergeApprovalPolicies(machine({ require: ["rollback-incompatible"], allowedSigners: "/etc/s" }), stack({ require: ["deploy"] }), stackDir);
    assert.deepEqual(approvalsNeeded(p, "rollback"), []);
    assert.deepEqual(approvalsNeeded(p, "rollback", "down-migration"), [{ category: "rollback-incompatible", by: ["machine"] }]);
    assert.deepEqual(approvalsNeeded(p, "deploy", "down-migration"), [{ category: "deploy", by: ["stack"] }]);
  });
});

describe("a machine policy is valid or refused (exit 5), never half-read", () => {
  let dir: string;
  const write = (text: string, name = "policy.yaml") => {
    fs.writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  /** Asserts `fn` raises InvalidMachinePolicyError (exit 5) naming the file and `problem`. */
  const refused = (fn: () => unknown, problem: RegExp) =>
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof InvalidMachinePolicyError, String(e));
      assert.equal(e.exitCode, ExitCode.invalidVersionFile);
      assert.match(e.message, /^the machine policy \S+ is invalid, nothing was changed/);
      assert.match(e.message, problem);
      return true;
    });

  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-machine-policy-"))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("reads require, approvers and allowed signers relative to the file", () => {
    const file = write("approvals:\n  require: [deploy, rollback]\n  approvers: [alice]\n  allowedSigners: keys/allowed_signers\n");
    assert.deepEqual(readMachinePolicy(file), {
      source: file,
      approvals: { require: ["deploy", "rollback"], approvers: ["alice"], allowedSigners: path.join(dir, "keys", "allowed_signers") },
    });
  });

  it("takes the allowed signers given beside it when it names none, and refuses two different files", () => {
    const file = write("approvals:\n  require: [deploy]\n");
    const other = { file: "/etc/stackpin/allowed_signers", from: "STACKPIN_ALLOWED_SIGNERS" };
    assert.equal(readMachinePolicy(file, { allowedSigners: other }).approvals.allowedSigners, other.file);
    const both = write("approvals:\n  require: [deploy]\n  allowedSigners: /etc/other_signers\n", "both.yaml");
    refused(() => readMachinePolicy(both, { allowedSigners: other }), /names \/etc\/other_signers, but STACKPIN_ALLOWED_SIGNERS names \/etc\/stackpin\/allowed_signers/);
  });

  it("refuses approvals required with no allowed signers of the machine's own", () => {
    refused(() => readMachinePolicy(write("approvals:\n  require: [deploy]\n")), /approvals\.allowedSigners: a machine that requires approvals checks them against its own allowed signers/);
    refused(() => readMachinePolicy(write("approvals:\n  approvers: [alice]\n")), /approvals\.allowedSigners: approvers sign their approvals/);
  });

  for (const [label, text, problem] of [
    ["not YAML", "approvals: [deploy\n", /not parseable YAML|Flow sequence|Unexpected/i],
    ["a misspelt key", "aprovals:\n  require: [deploy]\n", /aprovals/],
    ["an unknown category", "approvals:\n  require: [deploy, rollbak]\n  allowedSigners: /etc/s\n", /approvals\.require\.1/],
    ["require not a list", "approvals:\n  require: deploy\n  allowedSigners: /etc/s\n", /approvals\.require/],
    ["a list at the top", "- deploy\n", /expected object/i],
  ] as const) {
    it(`refuses ${label}`, () => refused(() => readMachinePolicy(write(text)), problem));
  }

  it("refuses a file that is not there", () => refused(() => readMachinePolicy(path.join(dir, "absent.yaml")), /cannot be read \(ENOENT\)/));

  it("refuses a policy given in code with a relative allowed-signers path", () => {
    refused(() => checkMachinePolicy({ source: "code", approvals: { require: ["deploy"], allowedSigners: "allowed_signers" } }), /approvals\.allowedSigners: an absolute path/);
  });
});
