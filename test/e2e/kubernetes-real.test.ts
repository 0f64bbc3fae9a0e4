import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { packageRoot, PulumiCli } from "../../lib/engine/pulumi-cli";
import { ExitCode } from "../../lib/errors";
import { k8sBinDir, kubernetesProviderVersion } from "../../scripts/k8s-tools";
import { findPgBin } from "../../scripts/local-postgres";
import { filesUnder, json, pulumiOrSkip, tempProject, TempProject } from "./harness";
import { EndpointSamples, K8sCluster, k8sToolsOrSkip, startCluster, watchEndpoints } from "./k8s-cluster";
import { writeProgram } from "./own-program";
import { CheckRun, playCheckPod, restoredVolumeStandIn } from "./restore-check-kubelet";

const exec = promisify(execFile);
const NS = "shop";

/**
 * The Kubernetes program through stackpin's CLI, with the real Pulumi Kubernetes provider, against a
 * real API server (the control plane of test/e2e/k8s-cluster.ts): what is read back comes from the API.
 */
describe("kubernetes target against a real API server: deploy v41, v42, preview and rollback to v41", function () {
  let pulumi: PulumiCli;
  let cluster: K8sCluster | undefined;
  let project: TempProject | undefined;
  let fixture: string | undefined;
  let env: NodeJS.ProcessEnv;
  const stack = "prod";
  const figures: string[] = [];
  /** The VolumeSnapshot the failed attempt at v42 took. */
  let failedAttemptSnapshot: any;
  /** The VolumeSnapshot the successful retry of v42 took. */
  let retrySnapshot: string | undefined;

  const cli = (args: string[]) => project!.cli([...args, "--stack", stack], { env });
  const api = () => cluster!.api;
  const deployment = (slot: string) => api().get(`/apis/apps/v1/namespaces/${NS}/deployments/shop-${slot}`);
  const selector = async () => (await api().get(`/api/v1/namespaces/${NS}/services/shop`)).spec.selector;
  /** The Secret a colour's pods read `apiKey` from (the Secret its Deployment's template names). */
  const secret = async (slot: string) => {
    const env = (await deployment(slot)).spec.template.spec.containers[0].env as any[];
    return api().get(`/api/v1/namespaces/${NS}/secrets/${env.find((e) => e.name === "SECRET_APIKEY").valueFrom.secretKeyRef.name}`);
  };
  const snapshotsOf = async (name: string) =>
    (await api().get(`/apis/snapshot.storage.k8s.io/v1/namespaces/${NS}/volumesnapshots?labelSelector=stackpin.dev%2Fsnapshot%3D${name}`)).items as any[];
  /**
   * Runs `operation` while playing the snapshot controller and CSI driver this cluster lacks: every
   * VolumeSnapshot created meanwhile becomes readyToUse (none existing before is touched).
   */
  const withSnapshotController = async <T>(operation: () => Promise<T>): Promise<T> => {
    const before = new Set(((await api().get(`/apis/snapshot.storage.k8s.io/v1/namespaces/${NS}/volumesnapshots`)).items as any[]).map((x) => x.metadata.uid));
    let over = false;
    const play = (async () => {
      while (!over) {
        const list = (await api().get(`/apis/snapshot.storage.k8s.io/v1/namespaces/${NS}/volumesnapshots`)).items as any[];
        for (const snap of list.filter((x) => !before.has(x.metadata.uid) && x.status?.readyToUse !== true)) {
          const r = await api().request(
            "PATCH",
            `/apis/snapshot.storage.k8s.io/v1/namespaces/${NS}/volumesnapshots/${snap.metadata.name}/status`,
            { status: { readyToUse: true, creationTime: new Date().toISOString() } },
            "application/merge-patch+json",
          );
          assert.equal(r.status, 200, JSON.stringify(r.body));
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    try {
      return await operation();
    } finally {
      over = true;
      await play;
    }
  };
  const image = async (slot: string) => (await deployment(slot)).spec.template.spec.containers[0].image;
  const databaseClaim = async () => (await api().get(`/apis/apps/v1/namespaces/${NS}/deployments/shop-database`)).spec.template.spec.volumes[0].persistentVolumeClaim.claimName;
  /** Runs `operation` while playing the kubelet for the restore check it starts, on a stand-in volume holding `schema` (undefined: empty). */
  const withRestoreCheck = async <T>(schema: number | undefined, operation: () => Promise<T>): Promise<{ result: T; check: CheckRun | undefined }> => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-restored-"));
    try {
      const volume = await restoredVolumeStandIn(dir, schema);
      let over = false;
      const [result, check] = await Promise.all([
        operation().finally(() => (over = true)),
        playCheckPod(cluster!, NS, volume, () => over),
      ]);
      return { result, check };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  /** Installs the provider plugin built into tools/k8s/bin in `p`'s Pulumi home, at the version the SDK asks for. */
  const installProvider = (p: TempProject) =>
    exec(
      path.join(pulumi.root, "pulumi"),
      ["plugin", "install", "resource", "kubernetes", kubernetesProviderVersion, "--file", path.join(k8sBinDir(), "pulumi-resource-kubernetes")],
      { env: { ...process.env, ...p.env } },
    );
  const timed = async <T>(label: string, f: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const r = await f();
    figures.push(`${label} ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return r;
  };
  const endpointsDuring = async (label: string, f: () => Promise<void>): Promise<EndpointSamples> => {
    const watch = watchEndpoints(api(), NS, "shop");
    let seen: EndpointSamples | undefined;
    try {
      await f();
    } finally {
      seen = await watch.stop();
      figures.push(`${label}: ${seen.samples} endpoint samples, min ready ${seen.minReady}, ${seen.zeroReady} with none ready`);
      process.stderr.write(`      [k8s] ${figures[figures.length - 1]}\n`);
    }
    return seen;
  };

  before(async function () {
    pulumi = await pulumiOrSkip(this);
    k8sToolsOrSkip(this);
    // The restore check's pods run here, on PostgreSQL's binaries (test/e2e/restore-check-kubelet.ts).
    if (!findPgBin()) {
      if (process.env.STACKPIN_REQUIRE_E2E === "1") throw new Error("PostgreSQL server binaries are missing (apt-get install postgresql)");
      process.stderr.write("\n  KUBERNETES TESTS SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql\n");
      this.skip();
    }
    cluster = await startCluster({ snapshotCrds: true });
    await api().create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } });
    // No provisioner here: a StorageClass and volumes made beforehand let the data claim and a restore bind.
    await cluster.addVolumes("standard", 4);
    // The class a snapshot names must exist (the program reads it first); no CSI driver serves it here.
    await api().create("/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses", {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshotClass",
      metadata: { name: "csi-snapclass" },
      driver: "hostpath.csi.k8s.io",
      deletionPolicy: "Delete",
    });
    await cluster.until(`the ${NS} namespace's default ServiceAccount`, async () => (await api().request("GET", `/api/v1/namespaces/${NS}/serviceaccounts/default`)).status === 200);

    // The stack: the cloud fixture's versions with the Kubernetes stack.yaml.
    fixture = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-k8s-fixture-"));
    const cloud = path.join(packageRoot(), "test", "fixtures", "cloud");
    fs.cpSync(path.join(cloud, "versions"), fixture, { recursive: true });
    // A rollout that makes no progress for 10 s fails (Kubernetes' default is 10 minutes).
    fs.writeFileSync(path.join(fixture, "stack.yaml"), `${fs.readFileSync(path.join(cloud, "kubernetes.stack.yaml"), "utf8").trimEnd()}\n    progressDeadlineSeconds: 10\n    snapshotReadySeconds: 15\n`);
    // v43 is v41 again with an image whose pods kwok runs but never makes Ready (tools/k8s/kwok-stages.yaml).
    fs.writeFileSync(
      path.join(fixture, "v43.yaml"),
      fs.readFileSync(path.join(fixture, "v41.yaml"), "utf8").replace("version: v41", "version: v43").replace("replicas: 3", "replicas: 3\n  imageTag: never-ready").replace("generation: 1", "generation: 2"),
    );
    // v44 is v41 again under another version: deployed on green, it leaves v41 warm on blue to switch back to.
    fs.writeFileSync(path.join(fixture, "v44.yaml"), fs.readFileSync(path.join(fixture, "v41.yaml"), "utf8").replace("version: v41", "version: v44"));
    project = tempProject(pulumi, { stack, from: fixture });
    env = { KUBECONFIG: cluster.kubeconfig };

    // The engine finds the provider plugin installed at the version the SDK asks for: no download, no warning.
    const started = Date.now();
    await installProvider(project);
    figures.push(`plugin install ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  after(async () => {
    try {
      if (project && fs.existsSync(path.join(project.stateDir, ".pulumi", "stacks"))) {
        const d = await cli(["destroy", "--yes", "--approve-data-loss"]);
        assert.equal(d.code, ExitCode.ok, d.stderr);
        // The harness's teardown then finds nothing left to destroy, and checks what is left behind.
        fs.rmSync(path.join(project.stateDir, ".pulumi", "stacks"), { recursive: true, force: true });
      }
      await project?.teardown();
    } finally {
      if (fixture) fs.rmSync(fixture, { recursive: true, force: true });
      if (cluster) {
        await cluster.stop();
        process.stderr.write(`      [k8s] control plane start ${cluster.startSeconds.toFixed(1)} s; ${figures.join("; ")}\n`);
      }
    }
  });

  it("deploys v41: the Service selects blue, whose Deployment runs the v41 image with the generation-1 Secret", async () => {
    const r = await timed("deploy v41", () => cli(["deploy", "--version", "v41", "--yes", "--json"]));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    assert.doesNotMatch(r.stderr + r.stdout, /warning: .*version|Could not automatically download/i, "plugin and SDK versions agree");
    assert.deepEqual(await selector(), { app: "shop", slot: "blue" });
    assert.equal(await image("blue"), "registry.example.com/shop:v41");
    assert.equal((await deployment("blue")).status.readyReplicas, 3);
    assert.equal((await secret("blue")).metadata.annotations["stackpin.dev/generation"], "1");
  });

  it("deploy v42 while its VolumeSnapshot never becomes readyToUse (no snapshot controller): exit 8, nothing migrates, the Service stays on blue", async () => {
    const seen = await endpointsDuring("deploy v42, snapshot never ready", async () => {
      const r = await timed("deploy v42 refused (snapshot not ready in 15 s)", () => cli(["deploy", "--version", "v42", "--yes"]));
      assert.equal(r.code, ExitCode.applyFailed, r.stderr);
      assert.match(r.stderr, /shop-pre-v42|snapshot-pre-v42/, r.stderr);
      // While the engine waits, the progress names what it waits on and why (the provider's status line),
      // and the error ends on the provider's own errors, not on a dangling "N errors occurred:".
      assert.match(r.stderr, /… waiting on snapshot-pre-v42 \(kubernetes:snapshot\.storage\.k8s\.io\/v1:VolumeSnapshot\): \{\.status\.readyToUse\} selected nothing/, r.stderr);
      assert.match(r.stderr.trimEnd(), /timed out waiting for the condition$/, r.stderr);
    });
    const [snap] = await snapshotsOf("pre-v42");
    assert.ok(snap, "no pre-v42 VolumeSnapshot");
    failedAttemptSnapshot = snap;
    assert.notEqual(snap.status?.readyToUse, true);
    assert.equal((await api().request("GET", `/apis/batch/v1/namespaces/${NS}/jobs/shop-migrate-2`)).status, 404, "the migration ran without a ready snapshot");
    assert.deepEqual(await selector(), { app: "shop", slot: "blue" });
    assert.equal(seen.zeroReady, 0);
  });

  it("rollback --to v41 after that failed rotating deploy: apiKey stays at generation 2, blue is rolled in place (never replaced), never 0 ready endpoints", async () => {
    const blueBefore = await deployment("blue");
    let r: Awaited<ReturnType<typeof cli>> | undefined;
    const seen = await endpointsDuring("rollback --to v41 after a failed rotating deploy", async () => {
      r = await timed("rollback --to v41 after the failed v42", () => cli(["rollback", "--to", "v41", "--yes", "--json"]));
    });
    assert.equal(r!.code, ExitCode.ok, r!.stderr);
    const result = json(r!);
    assert.deepEqual(result.outputs.secretGenerations.value, { apiKey: 2 }, "a rollback brought a lower generation back");
    const blueAfter = await deployment("blue");
    assert.equal(blueAfter.metadata.uid, blueBefore.metadata.uid, "the live colour's Deployment was replaced");
    assert.equal((await secret("blue")).metadata.annotations["stackpin.dev/generation"], "2");
    assert.equal(blueAfter.status.readyReplicas, 3);
    assert.deepEqual(await selector(), { app: "shop", slot: "blue" });
    assert.equal(seen.zeroReady, 0, `the Service had no ready endpoint in ${seen.zeroReady} of ${seen.samples} samples`);
    // The summary says what happened: the live colour moved to the new generation, no pure switch claimed.
    assert.doesNotMatch(r!.stdout + r!.stderr, /no redeploy/);
    assert.match(r!.stderr, /v41 stays on the blue slot, which moves to the current secrets \(apiKey generation 2\) in place/, r!.stderr);
  });

  it("retries v42: a VolumeSnapshot of its own, not the failed attempt's; green is ready before the selector moves; blue untouched; never 0 ready endpoints", async () => {
    const blueBefore = await deployment("blue");
    const blueSecretBefore = await secret("blue");
    let printed = "";
    let outputs: any;
    const started = Date.now();
    const seen = await endpointsDuring("deploy v42", async () => {
      const r = await timed("deploy v42", () => withSnapshotController(() => cli(["deploy", "--version", "v42", "--yes", "--json"])));
      assert.equal(r.code, ExitCode.ok, r.stderr);
      printed = r.stdout + r.stderr;
      outputs = json(r).outputs;
    });
    assert.deepEqual(await selector(), { app: "shop", slot: "green" });
    assert.equal(await image("green"), "registry.example.com/shop:v42");
    assert.equal((await deployment("green")).status.readyReplicas, 3);
    assert.equal(await image("blue"), "registry.example.com/shop:v41");
    const blueAfter = await deployment("blue");
    assert.equal(blueAfter.metadata.uid, blueBefore.metadata.uid, "blue's Deployment was replaced");
    assert.equal(blueAfter.metadata.generation, blueBefore.metadata.generation, "blue's pods were rolled: it already ran generation 2");
    // Both colours read the one Secret of generation 2: the colour kept for a switch back is current.
    const blueSecretAfter = await secret("blue");
    assert.equal(blueSecretAfter.metadata.uid, blueSecretBefore.metadata.uid, "the Secret the live colour read was replaced");
    assert.equal((await secret("green")).metadata.uid, blueSecretAfter.metadata.uid);
    assert.equal(blueSecretAfter.metadata.annotations["stackpin.dev/generation"], "2");
    // The generated value reaches the cluster, and nowhere in plain text: not the output, not the state.
    const value = Buffer.from(blueSecretAfter.data.value, "base64").toString();
    assert.equal(value.length, 32);
    assert.ok(!printed.includes(value), "the secret was printed");
    const files = filesUnder(project!.dir).filter((f) => !f.includes(`${path.sep}.pulumi-home${path.sep}`));
    assert.deepEqual(files.filter((f) => fs.readFileSync(f).includes(value)), [], "the secret is in plain text in a file");
    assert.ok(seen.samples > 0);
    assert.equal(seen.zeroReady, 0, `the Service had no ready endpoint in ${seen.zeroReady} of ${seen.samples} samples`);
    // The retry took its own snapshot: a new object, made after the retry started, whose time is the one
    // recorded (a restore to it loses nothing written between the two attempts). The failed attempt's
    // object stays in the cluster (a snapshot never leaves without approval).
    const snaps = await snapshotsOf("pre-v42");
    const mine = snaps.find((x) => x.metadata.uid !== failedAttemptSnapshot.metadata.uid);
    assert.ok(mine, `the retry reused the failed attempt's snapshot: ${snaps.map((x) => x.metadata.name).join(", ")}`);
    assert.ok(snaps.some((x) => x.metadata.uid === failedAttemptSnapshot.metadata.uid), "the failed attempt's snapshot was deleted");
    assert.notEqual(mine.metadata.name, failedAttemptSnapshot.metadata.name);
    assert.ok(Date.parse(mine.metadata.creationTimestamp) >= Math.floor(started / 1000) * 1000, `${mine.metadata.creationTimestamp} is before the retry started`);
    assert.equal(outputs.databaseSnapshots.value["pre-v42"].takenAt, mine.metadata.creationTimestamp);
    assert.equal(mine.spec.source.persistentVolumeClaimName, "shop-data");
    retrySnapshot = mine.metadata.name;
  });

  it("preview --to v41 shows the diff the real provider computes: the Service's selector back to blue, green deleted", async () => {
    const r = await timed("preview --to v41", () => cli(["preview", "--to", "v41", "--json"]));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const plan = json(r);
    assert.equal(plan.rollout.move, "switch-back");
    const service = plan.resourceChanges.find((s: any) => s.name === "service");
    assert.ok(service, JSON.stringify(plan.resourceChanges));
    assert.ok(service.diffKeys.some((k: string) => /selector/.test(k)), JSON.stringify(service));
    const green = plan.resourceChanges.find((s: any) => s.name === "app-green");
    assert.equal(green?.op, "delete");
    assert.deepEqual(await selector(), { app: "shop", slot: "green" }, "a preview changed the cluster");
  });

  it("check --to v41: the way back holds on the cluster: the image and the objects the program needs, and the ready VolumeSnapshot it restores from", async () => {
    const r = await timed("check --to v41", () => cli(["check", "--to", "v41", "--json"]));
    assert.equal(r.code, ExitCode.ok, r.stderr);
    const legs = Object.fromEntries(json(r).targets[0].legs.map((l: { leg: string; ok: boolean; detail: string }) => [l.leg, l]));
    assert.match(legs.artifacts.detail, /^image \S+:v41 \(the registry is not asked\); the cluster has namespace \S+, StorageClass \S+, VolumeSnapshot CRD, VolumeSnapshotClass \S+$/);
    assert.match(legs.database.detail, /^restore from VolumeSnapshot shop-pre-v42-r\d+: ready to use/);
    assert.match(legs.plugins.detail, /^installed: kubernetes 4\.25\.0/);
    assert.deepEqual(await selector(), { app: "shop", slot: "green" }, "a check changed the cluster");
  });

  it("rollback --to v41 whose restored volume holds nothing (no CSI driver filled it): the check fails, exit 8, the database and the Service stay where they were", async () => {
    let run: { result: Awaited<ReturnType<typeof cli>>; check: CheckRun | undefined } | undefined;
    const seen = await endpointsDuring("rollback --to v41, restore check fails", async () => {
      run = await timed("rollback --to v41 refused by the restore check", () =>
        withRestoreCheck(undefined, () => cli(["rollback", "--to", "v41", "--yes", "--approve-data-loss", "--reason", "v42 broke checkout", "--json"])),
      );
    });
    const { result: r, check } = run!;
    assert.equal(r.code, ExitCode.applyFailed, r.stderr);
    assert.ok(check, "no restore-check pod ran");
    assert.notEqual(check.exitCode, 0, check.output);
    assert.equal(check.env.EXPECT_SCHEMA, "1", "the schema recorded when pre-v42 was taken");
    assert.match(check.env.RESTORE, /^restore-pre-v42-\d+$/);
    // While the check runs, the progress says the engine waits on its Job, and why.
    assert.match(r.stderr, /… waiting on check-restore-pre-v42-\d+ \(kubernetes:batch\/v1:Job\): Waiting for Job "shop\/shop-check-[0-9a-f]+" to succeed/, r.stderr);
    const error = json(r).error;
    assert.equal(error.code, "database-apply-failed", JSON.stringify(error));
    assert.match(
      error.message,
      /restore restore-pre-v42-\d+ from snapshot pre-v42 failed its check: the restored volume holds no PostgreSQL data directory .*; the database and the app stay on the volume they were on/,
      error.message,
    );
    // The restore claim was made from the snapshot; nothing moved to it.
    const claim = await api().get(`/api/v1/namespaces/${NS}/persistentvolumeclaims/shop-${check.env.RESTORE}`);
    assert.deepEqual(claim.spec.dataSource, { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: retrySnapshot });
    assert.equal(claim.spec.storageClassName, "standard");
    assert.equal(claim.metadata.annotations["stackpin.dev/source"], "primary");
    assert.equal(await databaseClaim(), "shop-data", "the database moved to a volume that failed its check");
    assert.deepEqual(await selector(), { app: "shop", slot: "green" });
    assert.equal(await image("green"), "registry.example.com/shop:v42");
    assert.equal(seen.zeroReady, 0, `the Service had no ready endpoint in ${seen.zeroReady} of ${seen.samples} samples`);
    const history = json(await cli(["history", "--json"]));
    assert.deepEqual(history.slice(0, 2).map((h: any) => [h.op, h.to, h.result]), [["rollback", "v41", "failed"], ["deploy", "v42", "succeeded"]]);
  });

  it("rollback --to v41: the Service selects blue again (read from the API), blue runs v41, the generation stays 2, history records it", async () => {
    let check: CheckRun | undefined;
    const seen = await endpointsDuring("rollback --to v41", async () => {
      const run = await timed("rollback --to v41", () =>
        withRestoreCheck(1, () => cli(["rollback", "--to", "v41", "--yes", "--approve-data-loss", "--reason", "v42 broke checkout", "--json"])),
      );
      assert.equal(run.result.code, ExitCode.ok, run.result.stderr);
      check = run.check;
    });
    // The failed check's Job was replaced and ran again, on a volume holding what pre-v42 held; then the database moved.
    assert.ok(check, "no restore-check pod ran");
    assert.equal(check.exitCode, 0, check.output);
    assert.match(check.output, /the database answers at schema 1/);
    assert.equal(await databaseClaim(), `shop-${check.env.RESTORE}`);
    assert.deepEqual(await selector(), { app: "shop", slot: "blue" });
    assert.equal(await image("blue"), "registry.example.com/shop:v41");
    assert.equal((await api().request("GET", `/apis/apps/v1/namespaces/${NS}/deployments/shop-green`)).status, 404, "green is drained");
    assert.equal((await secret("blue")).metadata.annotations["stackpin.dev/generation"], "2", "a rollback never brings back a lower generation");
    assert.equal(seen.zeroReady, 0, `the Service had no ready endpoint in ${seen.zeroReady} of ${seen.samples} samples`);
    const history = json(await cli(["history", "--json"]));
    assert.deepEqual(
      history.slice(0, 5).map((h: any) => [h.op, h.to, h.result]),
      [
        ["rollback", "v41", "succeeded"],
        ["rollback", "v41", "failed"],
        ["deploy", "v42", "succeeded"],
        ["rollback", "v41", "succeeded"],
        ["deploy", "v42", "failed"],
      ],
    );
  });

  it("deploy --auto-rollback of v43, whose pods never get ready: exit 11, the Service never moves, back on v41", async () => {
    let r: Awaited<ReturnType<typeof cli>> | undefined;
    const migrations = async () =>
      (await api().get(`/apis/batch/v1/namespaces/${NS}/jobs?labelSelector=app%3Dshop`)).items.filter((j: any) => j.metadata.name.startsWith("shop-migrate-")).map((j: any) => [j.metadata.name, j.metadata.uid]);
    const migrationsBefore = await migrations();
    assert.equal(migrationsBefore.length, 1, JSON.stringify(migrationsBefore));
    const seen = await endpointsDuring("deploy --auto-rollback v43", async () => {
      r = await timed("deploy --auto-rollback v43 (fails, rolls back)", () => cli(["deploy", "--version", "v43", "--yes", "--auto-rollback", "--approve-data-loss", "--json"]));
    });
    assert.equal(r!.code, ExitCode.verificationFailed, r!.stderr);
    // Two colour changes at schema 1: the restored database's migration Job is the same one, never re-run.
    assert.deepEqual(await migrations(), migrationsBefore);
    assert.deepEqual(await selector(), { app: "shop", slot: "blue" });
    assert.equal(await image("blue"), "registry.example.com/shop:v41");
    assert.equal(seen.zeroReady, 0, `the Service had no ready endpoint in ${seen.zeroReady} of ${seen.samples} samples`);
    const history = json(await cli(["history", "--json"]));
    assert.deepEqual(
      history.slice(0, 2).map((h: any) => [h.op, h.to, h.result]),
      [["rollback", "v41", "succeeded"], ["deploy", "v43", "failed"]],
      JSON.stringify(history.slice(0, 3).map((h: any) => [h.revision, h.op, h.to, h.result, h.startedAt, h.finishedAt])),
    );
  });

  it("a switch back to a warm colour moves traffic first: the selector is on blue, every ready endpoint a blue pod, before the engine records it; never 0 ready endpoints", async () => {
    const d = await timed("deploy v44", () => cli(["deploy", "--version", "v44", "--yes"]));
    assert.equal(d.code, ExitCode.ok, d.stderr);
    assert.deepEqual(await selector(), { app: "shop", slot: "green" });
    const blueBefore = await deployment("blue");
    // When the selector is first seen on blue, asked of the API as fast as it answers.
    let movedSeenAt: number | undefined;
    let watching = true;
    const watch = (async () => {
      while (watching && movedSeenAt === undefined) {
        if ((await selector()).slot === "blue") movedSeenAt = Date.now();
      }
    })();
    let r: Awaited<ReturnType<typeof cli>> | undefined;
    let ended = 0;
    const seen = await endpointsDuring("rollback --to v41, traffic first", async () => {
      r = await timed("rollback --to v41 (traffic first)", () => cli(["rollback", "--to", "v41", "--yes", "--json"]));
      ended = Date.now();
    });
    watching = false;
    await watch;
    assert.equal(r!.code, ExitCode.ok, r!.stderr);
    const result = json(r!);
    assert.equal(result.traffic?.slot, "blue", JSON.stringify(result.traffic));
    assert.match(result.traffic.detail, /Service shop\/shop selects slot=blue; its 3 ready endpoints are all blue pods/);
    assert.ok(result.traffic.settledMs !== undefined && result.traffic.settledMs < result.recordedMs, JSON.stringify(result));
    assert.ok(movedSeenAt !== undefined && movedSeenAt < ended, "the selector moved only when the command ended");
    assert.match(r!.stderr, /traffic moved to the blue slot \(v41\) at \+[0-9.]+ s/, r!.stderr);
    figures.push(`traffic first: selector moved ${(result.traffic.movedMs / 1000).toFixed(2)} s, settled ${(result.traffic.settledMs / 1000).toFixed(2)} s, recorded ${(result.recordedMs / 1000).toFixed(1)} s after the rollback started`);
    // Nothing was redeployed: the same blue Deployment, at the same generation.
    const blueAfter = await deployment("blue");
    assert.equal(blueAfter.metadata.uid, blueBefore.metadata.uid);
    assert.equal(blueAfter.metadata.generation, blueBefore.metadata.generation, "blue's pods were rolled");
    assert.equal((await api().request("GET", `/apis/apps/v1/namespaces/${NS}/deployments/shop-green`)).status, 404, "green is drained");
    assert.equal(seen.zeroReady, 0, `the Service had no ready endpoint in ${seen.zeroReady} of ${seen.samples} samples`);
    // The selector was written under the provider's own field manager, which owns it still after the engine's update.
    const service = await api().get(`/api/v1/namespaces/${NS}/services/shop`);
    const managers = (service.metadata.managedFields as any[]).map((m) => m.manager);
    assert.ok(managers.every((m) => m.startsWith("pulumi-kubernetes")) && !managers.includes("stackpin"), JSON.stringify(managers));
    const history = json(await cli(["history", "--json"]));
    assert.deepEqual([history[0].op, history[0].to, history[0].result], ["rollback", "v41", "succeeded"]);
  });

  it("a stack whose StorageClass does not exist is refused in seconds, naming it, with nothing created", async () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-k8s-fixture-"));
    let cart: TempProject | undefined;
    try {
      fs.cpSync(fixture!, other, { recursive: true });
      const text = fs.readFileSync(path.join(other, "stack.yaml"), "utf8").replace("app: shop", "app: cart").replace("storageClass: standard", "storageClass: fast-ssd");
      fs.writeFileSync(path.join(other, "stack.yaml"), text);
      cart = tempProject(pulumi, { stack: "cart", from: other });
      await installProvider(cart);
      const before = cart.stateDigest();
      const started = Date.now();
      const r = await cart.cli(["deploy", "--stack", "cart", "--version", "v41", "--yes"], { env });
      const seconds = (Date.now() - started) / 1000;
      figures.push(`refusal with no StorageClass ${seconds.toFixed(1)} s`);
      process.stderr.write(`      [k8s] a deploy with a missing StorageClass refused in ${seconds.toFixed(1)} s (exit ${r.code})\n`);
      // The program's read of the class fails in the engine's preview (the database check's, before any
      // update): an engine failure with nothing applied, exit 8 as the README's table says, naming the class.
      assert.equal(r.code, ExitCode.applyFailed, r.stderr);
      assert.match(r.stderr, /the Pulumi engine failed on stack cart in the preview \(nothing was applied\):\nPreview failed: resource 'fast-ssd' does not exist/, r.stderr);
      // ...and says what kind of object is missing and how to provide it.
      assert.match(r.stderr, /the cluster has no StorageClass "fast-ssd" \(target\.storageClass\): create it, with a provisioner or pre-made PersistentVolumes, or name one that exists/, r.stderr);
      assert.ok(seconds < 60, `took ${seconds} s`);
      // A first deploy is planned on a scratch stack: the refused one leaves no stack in the backend.
      assert.equal(cart.stateDigest(), before, "the refused deploy changed the backend");
      assert.equal((await cart.cli(["status", "--stack", "cart", "--json"], { env })).code, ExitCode.unknownStack, "the refused deploy created the stack");
      const made = await api().get(`/apis/apps/v1/namespaces/${NS}/deployments?labelSelector=app%3Dcart`);
      const secrets = await api().get(`/api/v1/namespaces/${NS}/secrets?labelSelector=app%3Dcart`);
      const claims = await api().get(`/api/v1/namespaces/${NS}/persistentvolumeclaims?labelSelector=app%3Dcart`);
      assert.deepEqual([...made.items, ...secrets.items, ...claims.items].map((o: any) => o.metadata.name), []);
    } finally {
      await cart?.teardown();
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  it("a claim no volume can satisfy says why while the deploy waits, and the deploy fails once target.claimBindSeconds runs out, saying what to do", async () => {
    // Its own namespace, and a class that exists (the program's read of it passes) with no provisioner and no volume.
    await api().create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "nopv" } });
    await api().create("/apis/storage.k8s.io/v1/storageclasses", {
      apiVersion: "storage.k8s.io/v1",
      kind: "StorageClass",
      metadata: { name: "no-volumes" },
      provisioner: "kubernetes.io/no-provisioner",
      volumeBindingMode: "Immediate",
    });
    const other = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-k8s-fixture-"));
    let nopv: TempProject | undefined;
    try {
      fs.cpSync(fixture!, other, { recursive: true });
      const text = fs
        .readFileSync(path.join(other, "stack.yaml"), "utf8")
        .replace("namespace: shop", "namespace: nopv")
        .replace("app: shop", "app: nopv")
        .replace("storageClass: standard", "storageClass: no-volumes");
      fs.writeFileSync(path.join(other, "stack.yaml"), `${text.trimEnd()}\n    claimBindSeconds: 8\n`);
      nopv = tempProject(pulumi, { stack: "nopv", from: other });
      await installProvider(nopv);
      const started = Date.now();
      const r = await nopv.cli(["deploy", "--stack", "nopv", "--version", "v41", "--yes", "--json"], { env });
      const seconds = (Date.now() - started) / 1000;
      figures.push(`deploy with an unbindable claim ${seconds.toFixed(1)} s`);
      process.stderr.write(`      [k8s] a deploy whose claim cannot bind (claimBindSeconds 8) failed in ${seconds.toFixed(1)} s (exit ${r.code})\n`);
      // The engine's update failed on the claim's bind timeout: exit 8, as the README's table says.
      assert.equal(r.code, ExitCode.applyFailed, r.stderr);
      // While the engine waited, the progress named the claim and why it was Pending (its events' reason)...
      const why = 'claim nopv/nopv-data is Pending: StorageClass "no-volumes" has no provisioner (kubernetes.io/no-provisioner) and no PersistentVolume of that class is available for it (ProvisioningFailed)';
      const said = r.stderr.indexOf(`warning: ${why}`);
      assert.ok(said >= 0, r.stderr);
      assert.ok(said < r.stderr.indexOf("error: "), `the reason came only with the error:\n${r.stderr}`);
      // ...and the error says it again, with what to do; no bare "N errors occurred:" is left in what was printed.
      const error = json(r).error;
      assert.equal(error.code, "apply-failed");
      assert.match(error.message, /^applying v41 to stack nopv failed during the update \(revision 1, recorded in history as failed\)/, error.message);
      assert.ok(error.message.includes(`${why}; still Pending after `), error.message);
      assert.match(error.message, /\(target\.claimBindSeconds: 8\)\. To let it bind: create PersistentVolumes of class "no-volumes" that fit it \(10Gi, ReadWriteOnce\), run a provisioner for the class, or name a class that has one \(target\.storageClass\)\./, error.message);
      assert.doesNotMatch(r.stderr, /error: \d+ errors? occurred:\s*$/m, r.stderr);
      const claim = await api().get("/api/v1/namespaces/nopv/persistentvolumeclaims/nopv-data");
      assert.equal(claim.status.phase, "Pending");
      const history = json(await nopv.cli(["history", "--stack", "nopv", "--json"], { env }));
      assert.deepEqual(history.map((h: any) => [h.op, h.to, h.result]), [["deploy", "v41", "failed"]]);
    } finally {
      try {
        // The cluster goes with the suite: the stack (its claim Pending, kept on delete) is forgotten rather than destroyed.
        if (nopv) fs.rmSync(path.join(nopv.stateDir, ".pulumi", "stacks"), { recursive: true, force: true });
        await nopv?.teardown();
      } finally {
        fs.rmSync(other, { recursive: true, force: true });
      }
    }
  });

  it("destroy of a stack holding only its database volume (no snapshot yet) is refused, naming the volume; approved, the volume stays in the cluster and the output says so", async () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-k8s-fixture-"));
    let basket: TempProject | undefined;
    try {
      fs.cpSync(fixture!, other, { recursive: true });
      fs.writeFileSync(path.join(other, "stack.yaml"), fs.readFileSync(path.join(other, "stack.yaml"), "utf8").replace("app: shop", "app: basket"));
      basket = tempProject(pulumi, { stack: "basket", from: other });
      await installProvider(basket);
      // The earlier stack's claims took the volumes made before: one more for this stack's claim.
      await cluster!.addVolumes("standard", 1);
      const run = (args: string[]) => basket!.cli([...args, "--stack", "basket"], { env });
      const claimPath = `/api/v1/namespaces/${NS}/persistentvolumeclaims/basket-data`;
      const deployed = await timed("deploy v41 (basket)", () => run(["deploy", "--version", "v41", "--yes", "--json"]));
      assert.equal(deployed.code, ExitCode.ok, deployed.stderr);
      assert.deepEqual(json(await run(["status", "--json"])).outputs.databaseSnapshots?.value, {}, "v41 takes no snapshot");
      const claim = await api().get(claimPath);
      assert.equal(claim.status.phase, "Bound");

      // Without --approve-data-loss: refused, naming the volume and what would become of it; nothing changed.
      const before = basket.stateDigest();
      const refused = await run(["destroy", "--yes", "--json"]);
      assert.equal(refused.code, ExitCode.approvalRequired, refused.stderr);
      const error = json(refused).error;
      assert.equal(error.code, "approval-required");
      assert.match(
        error.message,
        /^destroying leaves volume shop\/basket-data in the cluster \(retained on delete: it keeps its data and the stack no longer manages it\) on stack basket needs explicit approval: re-run with --approve-data-loss\. Nothing was changed\.$/,
        error.message,
      );
      assert.equal(basket.stateDigest(), before, "the refused destroy changed the backend");
      const kept = await api().get(claimPath);
      assert.equal(kept.metadata.uid, claim.metadata.uid);
      assert.equal(kept.metadata.deletionTimestamp, undefined, "the claim is being deleted");
      assert.equal((await api().request("GET", `/apis/apps/v1/namespaces/${NS}/deployments/basket-blue`)).status, 200, "the refused destroy removed the app");
      assert.equal(json(await run(["status", "--json"])).liveVersion, "v41");

      // Approved: everything else goes, the volume stays with its data, and both the progress and the result say so.
      const destroyed = await timed("destroy --approve-data-loss (basket)", () => run(["destroy", "--yes", "--approve-data-loss"]));
      assert.equal(destroyed.code, ExitCode.ok, destroyed.stderr);
      assert.match(destroyed.stderr, /destroying everything stack basket owns: it leaves volume shop\/basket-data in the cluster \(retained on delete/, destroyed.stderr);
      assert.match(destroyed.stdout, /^destroyed everything stack basket owned \([\d.]+ s\)\n {2}left in the cluster, with its data \(retained on delete; .*\): volume shop\/basket-data$/m, destroyed.stdout);
      const left = await api().get(claimPath);
      assert.equal(left.metadata.uid, claim.metadata.uid, "the claim was replaced");
      assert.equal(left.metadata.deletionTimestamp, undefined, "the claim is being deleted");
      assert.equal(left.status.phase, "Bound");
      assert.equal(left.spec.volumeName, claim.spec.volumeName, "the claim lost its volume");
      assert.equal((await api().request("GET", `/apis/apps/v1/namespaces/${NS}/deployments/basket-blue`)).status, 404, "the app outlived the destroy");
    } finally {
      try {
        await basket?.teardown();
      } finally {
        fs.rmSync(other, { recursive: true, force: true });
      }
    }
  });

  it("a team's own program whose claim is not kept on delete: replacing it needs --approve-data-loss, named in the preview and in the refusal of a deploy and of a rollback", async () => {
    // Claims in these classes bind when a pod first uses them: Pending is as ready as they get, no volume needed.
    for (const name of ["ledger-hdd", "ledger-ssd"]) {
      await api().create("/apis/storage.k8s.io/v1/storageclasses", {
        apiVersion: "storage.k8s.io/v1",
        kind: "StorageClass",
        metadata: { name },
        provisioner: "kubernetes.io/no-provisioner",
        volumeBindingMode: "WaitForFirstConsumer",
      });
    }
    const source = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-k8s-own-"));
    let ledger: TempProject | undefined;
    try {
      fs.writeFileSync(path.join(source, "stack.yaml"), "program: ./infra/ledger\nproject: ledger\n");
      fs.writeFileSync(path.join(source, "v1.yaml"), "version: v1\nconfig:\n  app: ledger\n  storageClass: ledger-hdd\n");
      fs.writeFileSync(path.join(source, "v2.yaml"), "version: v2\ndescription: data on SSD\nconfig:\n  app: ledger\n  storageClass: ledger-ssd\n");
      ledger = tempProject(pulumi, { stack: "ledger", from: source });
      // As in the team's repository: its program, and @pulumi/kubernetes installed beside it.
      writeProgram(ledger.dir, "infra/ledger", {
        "index.ts": `import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { z } from "zod";

export const config = z.object({ app: z.string(), storageClass: z.string() }).strict();

export default async () => {
  const cfg = new pulumi.Config();
  const app = cfg.require("app");
  // Client-side apply: under server-side apply the provider's dry run of a replaced claim fails the
  // preview (the API server refuses the new spec while the old claim still exists).
  const provider = new k8s.Provider("cluster", { enableServerSideApply: false });
  const ns = new k8s.core.v1.Namespace("namespace", { metadata: { name: app } }, { provider });
  // A claim's class cannot change in place: a new class replaces the claim, and its data with it.
  const data = new k8s.core.v1.PersistentVolumeClaim(
    "data",
    {
      metadata: { name: app + "-data", namespace: ns.metadata.name },
      spec: { accessModes: ["ReadWriteOnce"], storageClassName: cfg.require("storageClass"), resources: { requests: { storage: "1Gi" } } },
    },
    { provider },
  );
  return { claim: data.metadata.name };
};
`,
      });
      fs.mkdirSync(path.join(ledger.dir, "node_modules", "@pulumi"), { recursive: true });
      fs.symlinkSync(path.join(packageRoot(), "node_modules", "@pulumi", "kubernetes"), path.join(ledger.dir, "node_modules", "@pulumi", "kubernetes"));
      await installProvider(ledger);
      const run = (args: string[]) => ledger!.cli([...args, "--stack", "ledger"], { env });
      const claim = () => api().get("/api/v1/namespaces/ledger/persistentvolumeclaims/ledger-data");
      const refusal = (version: string) =>
        `${version} deletes data: volume ledger/ledger-data (in the cluster) on stack ledger needs explicit approval: re-run with --approve-data-loss. Nothing was changed.`;

      const first = await timed("deploy v1 (own program)", () => run(["deploy", "--version", "v1", "--yes", "--json"]));
      assert.equal(first.code, ExitCode.ok, first.stderr);
      const v1Claim = await claim();
      assert.equal(v1Claim.spec.storageClassName, "ledger-hdd");

      // The preview names the claim whose data the replacement deletes, and says what applying needs.
      const preview = await timed("preview --version v2 (own program)", () => run(["preview", "--version", "v2", "--json"]));
      assert.equal(preview.code, ExitCode.ok, preview.stderr);
      const plan = json(preview);
      assert.deepEqual(
        plan.dataAtRisk.map((d: any) => [d.label, d.where, d.kind, d.fate]),
        [["volume ledger/ledger-data", "the cluster", "volume", "deleted"]],
        JSON.stringify(plan.dataAtRisk),
      );
      assert.ok(
        plan.warnings.includes("this deletes data: volume ledger/ledger-data (in the cluster); applying needs --approve-data-loss"),
        JSON.stringify(plan.warnings),
      );
      assert.equal(plan.resourceChanges.find((s: any) => s.name === "data")?.op, "replace", JSON.stringify(plan.resourceChanges));

      // A deploy without approval is refused, naming the claim; the backend and the claim are as they were.
      const before = ledger.stateDigest();
      const refused = await timed("deploy v2 refused (own program)", () => run(["deploy", "--version", "v2", "--yes", "--json"]));
      assert.equal(refused.code, ExitCode.approvalRequired, refused.stderr);
      assert.equal(json(refused).error.code, "approval-required");
      assert.equal(json(refused).error.message, refusal("v2"));
      assert.equal(ledger.stateDigest(), before, "the refused deploy changed the backend");
      const kept = await claim();
      assert.equal(kept.metadata.uid, v1Claim.metadata.uid, "the refused deploy replaced the claim");
      assert.equal(kept.metadata.deletionTimestamp, undefined, "the refused deploy is deleting the claim");
      assert.equal(kept.spec.storageClassName, "ledger-hdd");

      // Approved, the claim is replaced: a new object in the new class.
      const approved = await timed("deploy v2 --approve-data-loss (own program)", () => run(["deploy", "--version", "v2", "--yes", "--approve-data-loss", "--json"]));
      assert.equal(approved.code, ExitCode.ok, approved.stderr);
      const v2Claim = await claim();
      assert.notEqual(v2Claim.metadata.uid, v1Claim.metadata.uid, "the claim was not replaced");
      assert.equal(v2Claim.spec.storageClassName, "ledger-ssd");

      // Whatever the verb: a rollback to v1 would replace it again; its plan says so, and it is refused the same way.
      const rollbackPlan = await timed("preview --to v1 (own program)", () => run(["preview", "--to", "v1"]));
      assert.equal(rollbackPlan.code, ExitCode.ok, rollbackPlan.stderr);
      assert.match(rollbackPlan.stdout, /^ {2}! deletes volume ledger\/ledger-data in the cluster: its data is gone$/m, rollbackPlan.stdout);
      const beforeRollback = ledger.stateDigest();
      const back = await timed("rollback --to v1 refused (own program)", () => run(["rollback", "--to", "v1", "--yes", "--reason", "SSD latency", "--json"]));
      assert.equal(back.code, ExitCode.approvalRequired, back.stderr);
      assert.equal(json(back).error.message, refusal("v1"));
      assert.equal(ledger.stateDigest(), beforeRollback, "the refused rollback changed the backend");
      assert.equal((await claim()).metadata.uid, v2Claim.metadata.uid, "the refused rollback replaced the claim");
    } finally {
      try {
        // The cluster goes with the suite: the stack is forgotten rather than destroyed, which would cost seconds.
        if (ledger) fs.rmSync(path.join(ledger.stateDir, ".pulumi", "stacks"), { recursive: true, force: true });
        await ledger?.teardown();
      } finally {
        fs.rmSync(source, { recursive: true, force: true });
      }
    }
  });
});
