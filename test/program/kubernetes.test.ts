import { strict as assert } from "node:assert";
import { ApprovalRequiredError } from "../../lib/errors";
import { MockedStack, Step } from "./mock-cloud";

const DEPLOYMENT = "kubernetes:apps/v1:Deployment";
const SERVICE = "kubernetes:core/v1:Service";
const SECRET = "kubernetes:core/v1:Secret";
const SNAPSHOT = "kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshot";
const PVC = "kubernetes:core/v1:PersistentVolumeClaim";
const JOB = "kubernetes:batch/v1:Job";

const image = (step: Step, slot: string) => step.of(DEPLOYMENT)[`app-${slot}`]?.inputs.spec.template.spec.containers[0].image;

describe("kubernetes program under Pulumi's mocks: deploy v41 -> v42 (incompatible) -> rollback to v41", function () {
  let stack: MockedStack;
  let v41: Step;
  let v42: Step;
  let back: Step;

  before(async () => {
    stack = await MockedStack.create("kubernetes");
    v41 = await stack.apply("deploy", "v41");
    v42 = await stack.apply("deploy", "v42");
  });
  after(() => stack?.dispose());

  it("v41 runs on blue with its image tag, behind a Service selecting blue", () => {
    assert.equal(image(v41, "blue"), "registry.example.com/shop:v41");
    assert.deepEqual(v41.of(SERVICE).service.inputs.spec.selector, { app: "shop", slot: "blue" });
    assert.deepEqual(v41.of(SNAPSHOT), {});
  });

  it("the data volume is retained on delete: a destroy leaves it, with its data, in the cluster", () => {
    const data = v41.of(PVC).data;
    assert.equal(data.inputs.metadata.name, "shop-data");
    assert.equal(data.retainOnDelete, true);
  });

  it("readiness probes follow the version's verification settings", () => {
    const probe = v41.of(DEPLOYMENT)["app-blue"].inputs.spec.template.spec.containers[0].readinessProbe;
    assert.deepEqual(probe, { httpGet: { path: "/healthz", port: 8080 }, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 5 });
  });

  it("v42 takes a VolumeSnapshot named after it and its attempt (the update's revision) before its migration runs", () => {
    const snap = v42.of(SNAPSHOT)["snapshot-pre-v42"];
    assert.ok(snap, "no pre-v42 snapshot");
    assert.equal(snap.inputs.metadata.name, "shop-pre-v42-r2");
    assert.equal(snap.inputs.metadata.labels["stackpin.dev/snapshot"], "pre-v42");
    assert.equal(snap.inputs.spec.source.persistentVolumeClaimName, "shop-data");
    const job = v42.of(JOB)["migrate-2"];
    assert.equal(job.inputs.metadata.annotations["stackpin.dev/after-snapshot"], "shop-pre-v42-r2");
    assert.ok(job.order > snap.order, "the migration was declared before the snapshot it waits for");
    assert.deepEqual(job.inputs.spec.template.spec.containers[0].args, ["migrate", "--to-schema", "2"]);
  });

  it("v42 runs on green with its image, the Service selects green, and v41 stays on blue", () => {
    assert.equal(image(v42, "green"), "registry.example.com/shop:v42");
    assert.equal(image(v42, "blue"), "registry.example.com/shop:v41");
    assert.deepEqual(v42.of(SERVICE).service.inputs.spec.selector, { app: "shop", slot: "green" });
    assert.equal(v42.of(SECRET)["secret-apiKey"].inputs.metadata.annotations["stackpin.dev/generation"], "2");
  });

  it("one immutable Secret per generation, named as the API server accepts (apiKey -> api-key), read by both colours", () => {
    assert.equal(v41.of(SECRET)["secret-apiKey"].inputs.metadata.name, "shop-api-key-g1");
    assert.equal(v42.of(SECRET)["secret-apiKey"].inputs.metadata.name, "shop-api-key-g2");
    assert.equal(v42.of(SECRET)["secret-apiKey"].inputs.immutable, true);
    const ref = (slot: string) => v42.of(DEPLOYMENT)[`app-${slot}`].inputs.spec.template.spec.containers[0].env.find((e: any) => e.name === "SECRET_APIKEY");
    // The colour v41 stays on is brought to generation 2 too (after the switch): a switch back redeploys nothing.
    assert.equal(ref("green").valueFrom.secretKeyRef.name, "shop-api-key-g2");
    assert.equal(ref("blue").valueFrom.secretKeyRef.name, "shop-api-key-g2");
  });

  it("the colour taking no traffic changes after the Service; a live colour rolls without losing a ready pod", () => {
    const deployments = v42.of(DEPLOYMENT);
    assert.ok(deployments["app-blue"].order > v42.of(SERVICE).service.order, "the idle colour was declared before the switch");
    assert.deepEqual(deployments["app-green"].inputs.spec.strategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
  });

  it("the rollback needs approval: v42's migration has no down, so it means a restore", async () => {
    await assert.rejects(stack.apply("rollback", "v41"), ApprovalRequiredError);
    back = await stack.apply("rollback", "v41", { approveDataLoss: true });
  });

  it("after the rollback the Service selects blue again, which runs v41, and green is gone", () => {
    assert.deepEqual(back.of(SERVICE).service.inputs.spec.selector, { app: "shop", slot: "blue" });
    assert.equal(image(back, "blue"), "registry.example.com/shop:v41");
    assert.equal(back.of(DEPLOYMENT)["app-green"], undefined);
  });

  it("the restore is a volume from the pre-v42 snapshot, and the database runs on it", () => {
    const restored = back.of(PVC)[back.desired.database!.plan.live];
    assert.deepEqual(restored.inputs.spec.dataSource, { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: "shop-pre-v42-r2" });
    const taken = v42.outputs.databaseSnapshots["pre-v42"].takenAt;
    assert.equal(restored.inputs.metadata.annotations["stackpin.dev/restore-time"], taken);
    const db = back.of(DEPLOYMENT).database.inputs.spec.template.spec.volumes[0];
    assert.equal(db.persistentVolumeClaim.claimName, `shop-${back.desired.database!.plan.live}`);
  });

  it("a version without a database section keeps the snapshot and the restored volume, retained on delete", async () => {
    stack.writeVersion("v43", "version: v43\nconfig: { replicas: 3 }\nsecrets:\n  apiKey: { generation: 2 }\n");
    const v43 = await stack.apply("deploy", "v43");
    const live = back.desired.database!.plan.live;
    assert.equal(v43.of(SNAPSHOT)["snapshot-pre-v42"].retainOnDelete, true);
    assert.equal(v43.of(PVC)[live].retainOnDelete, true);
    assert.equal(v43.of(DEPLOYMENT).database.inputs.spec.template.spec.volumes[0].persistentVolumeClaim.claimName, `shop-${live}`);
  });

  it("the secret generation never decreases: v41 pins 1, the rollback keeps 2 and its value", () => {
    assert.equal(back.of(SECRET)["secret-apiKey"].inputs.metadata.annotations["stackpin.dev/generation"], "2");
    const generation = (s: Step) => s.resources.find((r) => r.name === "apiKey-value")!.inputs.generation;
    assert.equal(generation(back), generation(v42));
    assert.ok(back.desired.warnings.some((w) => /pins generation 1, but generation 2 is live/.test(w)));
  });
});
