import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import { filesUnder, json, pulumiOrSkip, TempProject, tempProject } from "./harness";

/** Rewrites a YAML file of the project through `edit`. */
function editYaml(file: string, edit: (doc: any) => void) {
  const doc = parse(fs.readFileSync(file, "utf8"));
  edit(doc);
  fs.writeFileSync(file, stringify(doc));
}

describe("smoke commands run with a minimal environment, and what is recorded of their output is capped and redacted", function () {
  let project: TempProject;
  let hook: { url: string; received: string[]; close: () => void };
  // Made here, so they can only show up where stackpin put them.
  const passphrase = `pp-${crypto.randomBytes(10).toString("hex")}`;
  const cloudSecret = `aws-${crypto.randomBytes(16).toString("hex")}`;
  const stackDir = () => path.join(project.dir, "stacks", "dev");

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    const received: string[] = [];
    const server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => (received.push(body), res.writeHead(200).end("ok")));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    hook = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received, close: () => server.close() };
    // A passphrase of its own (the demo's is also the project's name): no salt, no demo ciphertexts.
    editYaml(path.join(stackDir(), "stack.yaml"), (doc) => {
      delete doc.encryptionsalt;
      doc.policy = { notify: { webhooks: [hook.url], timeoutMs: 3000 } };
    });
    for (const v of ["v1", "v2", "v3"]) editYaml(path.join(stackDir(), `${v}.yaml`), (doc) => delete doc.config.apiToken);
    // The operator's environment holds the passphrase, a cloud credential and a variable the version names.
    Object.assign(project.env, { PULUMI_CONFIG_PASSPHRASE: passphrase, AWS_SECRET_ACCESS_KEY: cloudSecret, SMOKE_REGION: "eu-test-1" });
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v1", "--yes"]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
  });
  after(async () => {
    hook?.close();
    await project?.teardown();
  });

  it("a failing smoke command that prints its environment and echoes the passphrase leaves neither in any record", async () => {
    // The passphrase is assembled by the shell, so the version file (recorded as config) never holds it.
    const [a, b] = [passphrase.slice(0, 8), passphrase.slice(8)];
    editYaml(path.join(stackDir(), "v2.yaml"), (doc) => {
      doc.verify = {
        smokeEnv: ["SMOKE_REGION"],
        smoke: [
          {
            name: "prints what it can see",
            run: [
              `echo "env: $(env | sort | tr '\\n' ' ')"`,
              `echo "pass=[$PULUMI_CONFIG_PASSPHRASE] aws=[$AWS_SECRET_ACCESS_KEY] known=${a}""${b} key=AKIAIOSFODNN7EXAMPLE"`,
              `head -c 5000 /dev/zero | tr '\\0' x; echo`,
              "exit 1",
            ].join("\n"),
          },
        ],
      };
    });
    const r = await project.cli(["deploy", "--stack", "dev", "--version", "v2", "--yes", "--auto-rollback", "--json"]);
    assert.equal(r.code, ExitCode.verificationFailed, r.stderr);

    const incidents = filesUnder(path.join(project.dir, ".stackpin", "incidents", "dev"));
    assert.ok(incidents.length >= 2, "an incident record (json and md) was written");
    const recorded: Record<string, string> = {
      "deploy output": r.stdout + r.stderr,
      history: (await project.cli(["history", "--stack", "dev", "--json"])).stdout,
      status: (await project.cli(["status", "--stack", "dev", "--json"])).stdout,
      audit: (await project.cli(["audit", "show", "--stack", "dev", "--json"])).stdout,
      webhooks: hook.received.join("\n"),
      ...Object.fromEntries(incidents.map((f) => [path.basename(f), fs.readFileSync(f, "utf8")])),
    };
    const detail = json(r).error.details.deploy.verification.checks.find((c: any) => c.name === "smoke: prints what it can see").detail as string;
    // What the version allowed reached the command; nothing else from the operator's environment did.
    assert.match(detail, /ENDPOINT=http:\/\/127\.0\.0\.1:\d+/);
    assert.match(detail, /SMOKE_REGION=eu-test-1/);
    assert.match(detail, /pass=\[\] aws=\[\]/);
    for (const name of ["PULUMI_CONFIG_PASSPHRASE=", "AWS_SECRET_ACCESS_KEY=", "STACKPIN_ACTOR=", "PULUMI_HOME=", "STACKPIN_PULUMI="]) {
      assert.ok(!detail.includes(name), `${name} reached the smoke command`);
    }
    // What it printed of secrets anyway is redacted, and the record is capped.
    assert.match(detail, /known=\[redacted\] key=\[redacted\]/);
    assert.ok(detail.length <= 2048 + 64, `detail is ${detail.length} characters`);
    assert.match(detail, /more characters not kept/);
    assert.ok(hook.received.length > 0, "the webhook was told");
    for (const [where, text] of Object.entries(recorded)) {
      assert.ok(!text.includes(passphrase), `the passphrase is in ${where}`);
      assert.ok(!text.includes(cloudSecret), `the cloud secret is in ${where}`);
      assert.ok(!text.includes("AKIAIOSFODNN7EXAMPLE"), `the AWS key id is in ${where}`);
    }
    assert.ok(recorded.history.includes("[redacted]") || recorded.audit.includes("[redacted]"), "the redacted reason is what was recorded");
    process.stderr.write(`      [figures] smoke output: ${Object.keys(recorded).length} records checked, detail ${detail.length} characters\n`);
  });
});
