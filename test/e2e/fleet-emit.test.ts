import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { ExitCode } from "../../lib/errors";
import { jobName } from "../../lib/operations/fleet-emit";
import { K8sCluster, k8sToolsOrSkip, startCluster } from "./k8s-cluster";

/**
 * `stackpin fleet --emit k8s-jobs`: the emitted Jobs are checked by a real kube-apiserver (strict field
 * validation, server-side dry run), and the canary batch is created for real so the Job controller
 * makes its pod with the command a person would run.
 */
describe("fleet --emit k8s-jobs: one Job per stack, waves as ordered batches, accepted by a real API server", function () {
  let cluster: K8sCluster | undefined;
  let dir: string;
  const stacks = ["prod-a", "prod-b", "prod-c", "prod-d", "Prod_EU.1"];
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [path.join(packageRoot(), "dist", "lib", "cli", "main.js"), ...args], { cwd: dir, encoding: "utf8", env: { PATH: process.env.PATH, HOME: process.env.HOME } });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };

  before(async function () {
    k8sToolsOrSkip(this, { provider: false });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-emit-"));
    for (const s of stacks) fs.cpSync(path.join(packageRoot(), "stacks", "dev"), path.join(dir, "stacks", s), { recursive: true });
    cluster = await startCluster();
  });
  after(async () => {
    await cluster?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("names every Job as the API server requires, whatever the stack is called", () => {
    assert.equal(jobName("prod-a", "v41"), "stackpin-rollback-prod-a-v41");
    const odd = jobName("Prod_EU.1", "previous");
    assert.match(odd, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    assert.notEqual(odd, jobName("prod-eu-1", "previous"), "a changed name carries a hash, so two stacks never share a Job");
    assert.ok(jobName("x".repeat(80), "v1").length <= 63);
  });

  it("writes the batches in order; the API server accepts every Job (strict fields, dry run) and runs the canary's", async () => {
    const out = path.join(dir, "jobs");
    const r = cli(["fleet", "--emit", "k8s-jobs", "--stacks", "*", "--to", "previous", "--image", "registry.example/deploy:1", "--concurrency", "2", "--reason", "error rate", "--out", out]);
    assert.equal(r.code, ExitCode.ok, r.stderr);
    // Canary first (the first name), then the rest two at a time.
    assert.deepEqual(fs.readdirSync(out).sort(), ["01-canary.yaml", "02-rest-1.yaml", "03-rest-2.yaml"]);
    const jobs = fs.readdirSync(out).sort().map((f) => parseAllDocuments(fs.readFileSync(path.join(out, f), "utf8")).map((d) => d.toJS()));
    assert.deepEqual(jobs.map((b) => b.map((j: any) => j.metadata.annotations["stackpin.dev/stack"])), [["Prod_EU.1"], ["prod-a", "prod-b"], ["prod-c", "prod-d"]]);
    const all = jobs.flat();
    for (const j of all) {
      const c = j.spec.template.spec.containers[0];
      assert.deepEqual(c.args.slice(0, 4), ["rollback", "--stack", j.metadata.annotations["stackpin.dev/stack"], "--to"]);
      assert.deepEqual(c.envFrom, [{ secretRef: { name: "stackpin" } }], "secrets come from the Secret, never the manifest");
      assert.equal(j.spec.backoffLimit, 0);
    }

    const { api, until } = cluster!;
    await api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "stackpin" } });
    for (const j of all) {
      const a = await api.request("POST", "/apis/batch/v1/namespaces/stackpin/jobs?dryRun=All&fieldValidation=Strict", j);
      assert.equal(a.status, 201, `${j.metadata.name}: ${JSON.stringify(a.body)}`);
    }
    // A field the API does not know is refused the same way: the check is real.
    const bad = structuredClone(all[0]);
    bad.spec.template.spec.containers[0].envFrum = [];
    assert.equal((await api.request("POST", "/apis/batch/v1/namespaces/stackpin/jobs?dryRun=All&fieldValidation=Strict", bad)).status, 400);

    const canary = jobs[0][0];
    await api.create("/apis/batch/v1/namespaces/stackpin/jobs", canary);
    const pod = await until("the canary Job's pod", async () => {
      const pods = await api.get(`/api/v1/namespaces/stackpin/pods?labelSelector=job-name%3D${canary.metadata.name}`);
      return pods.items[0];
    });
    assert.deepEqual(pod.spec.containers[0].args, ["rollback", "--stack", "Prod_EU.1", "--to", "previous", "--yes", "--json", "--reason", "error rate"]);
    assert.equal(pod.spec.containers[0].image, "registry.example/deploy:1");
  });

  it("refuses a selection that names no stack, changing nothing: exit 3", () => {
    const r = cli(["fleet", "--emit", "k8s-jobs", "--stacks", "staging-*", "--to", "v1", "--image", "x", "--out", path.join(dir, "none")]);
    assert.equal(r.code, ExitCode.unknownStack, r.stderr);
    assert.equal(fs.existsSync(path.join(dir, "none")), false);
  });
});
