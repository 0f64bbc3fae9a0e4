import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { approvalNamespace, signedBytes } from "../../lib/policy/approvals";

/** SSH keys made for a test with the real ssh-keygen, in a temp directory the test removes. */
export interface Signers {
  dir: string;
  /** The private key file of `name`. */
  key(name: string): string;
  /** Allowed-signers lines for `names`, restricted to stackpin's namespace, as an operator writes them. */
  allowedSigners(names: string[]): string;
  /** Signs `statement` with `name`'s key exactly as an approver's ssh-keygen would: the armored signature. */
  sign(statement: unknown, name: string): string;
  remove(): void;
}

function keygen(args: string[], input?: string): string {
  const r = spawnSync("ssh-keygen", args, { input, encoding: "utf8" });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`ssh-keygen ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Generates an ed25519 key (no passphrase) per name. */
export function makeSigners(names: string[]): Signers {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-keys-"));
  for (const name of names) keygen(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path.join(dir, name)]);
  const key = (name: string) => path.join(dir, name);
  return {
    dir,
    key,
    allowedSigners: (list) =>
      list.map((n) => `${n} namespaces="${approvalNamespace}" ${fs.readFileSync(`${key(n)}.pub`, "utf8").split(" ").slice(0, 2).join(" ")}\n`).join(""),
    sign: (statement, name) => keygen(["-Y", "sign", "-f", key(name), "-n", approvalNamespace], signedBytes(statement)),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
