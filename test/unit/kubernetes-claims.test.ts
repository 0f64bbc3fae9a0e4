import { strict as assert } from "node:assert";
import { ClaimView, pendingAfterMs, pendingLine, pendingReason } from "../../programs/kubernetes/claims";
import { explainKubernetesNotReady } from "../../programs/kubernetes/schema";

const claim = (storageClassName?: string | null): ClaimView => ({
  metadata: { name: "shop-data", namespace: "shop" },
  spec: { storageClassName, accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "10Gi" } } },
});
// Events as the volume controller (kube-controller-manager 1.34) wrote them for Pending claims.
const event = (reason: string, message: string, lastTimestamp = "2026-12-06T13:54:11Z", type = "Normal") => ({ reason, message, type, lastTimestamp });

describe("why a claim is Pending, from its events", () => {
  it("no volume and no class: the controller's words, and to create a volume or name a class with a provisioner", () => {
    const why = pendingReason(claim(), [event("FailedBinding", "no persistent volumes available for this claim and no storage class is set")]);
    assert.equal(pendingLine("shop", claim(), why), "claim shop/shop-data is Pending: no persistent volumes available for this claim and no storage class is set (FailedBinding)");
    assert.equal(why.remedy, "create a PersistentVolume with no class that fits it (10Gi, ReadWriteOnce), or set target.storageClass to a class with a provisioner");
  });

  it("a class that does not exist is named, with how to provide it", () => {
    const why = pendingReason(claim("fast-ssd"), [event("ProvisioningFailed", 'storageclass.storage.k8s.io "fast-ssd" not found', undefined, "Warning")]);
    assert.equal(pendingLine("shop", claim("fast-ssd"), why), 'claim shop/shop-data is Pending: StorageClass "fast-ssd" not found (ProvisioningFailed)');
    assert.match(why.remedy!, /^the cluster has no StorageClass "fast-ssd": create it, with a provisioner or pre-made PersistentVolumes, or name one that exists/);
  });

  it("a class with no provisioner and no volume that fits: volumes of that class, a provisioner, or another class", () => {
    const why = pendingReason(claim("local"), [event("ProvisioningFailed", "no volume plugin matched name: kubernetes.io/no-provisioner", undefined, "Warning")]);
    assert.equal(
      pendingLine("shop", claim("local"), why),
      'claim shop/shop-data is Pending: StorageClass "local" has no provisioner (kubernetes.io/no-provisioner) and no PersistentVolume of that class is available for it (ProvisioningFailed)',
    );
    assert.equal(why.remedy, 'create PersistentVolumes of class "local" that fit it (10Gi, ReadWriteOnce), run a provisioner for the class, or name a class that has one (target.storageClass)');
  });

  it("an external provisioner that creates nothing is named, with what to check", () => {
    const why = pendingReason(claim("csi"), [
      event(
        "ExternalProvisioning",
        "Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
      ),
    ]);
    assert.equal(why.why, 'waiting for the external provisioner ebs.csi.aws.com of StorageClass "csi" to create a volume');
    assert.match(why.remedy!, /^check that ebs\.csi\.aws\.com runs and is registered/);
  });

  it("a claim that binds with its first consumer is waiting, not missing anything", () => {
    const why = pendingReason(claim("wffc"), [event("WaitForFirstConsumer", "waiting for first consumer to be created before binding")]);
    assert.equal(why.reason, "WaitForFirstConsumer");
    assert.equal(why.remedy, undefined);
  });

  it("the newest event says what the controller thinks now; with no event yet, it says so", () => {
    const why = pendingReason(claim("x"), [
      event("ProvisioningFailed", 'storageclass.storage.k8s.io "x" not found', "2026-12-06T13:54:20Z", "Warning"),
      event("FailedBinding", "no persistent volumes available for this claim and no storage class is set", "2026-12-06T13:54:11Z"),
    ]);
    assert.equal(why.reason, "ProvisioningFailed");
    const none = pendingReason(claim("x"), []);
    assert.equal(none.reason, undefined);
    assert.match(pendingLine("shop", claim("x"), none), /^claim shop\/shop-data is Pending: no event about it yet/);
  });

  it("a claim is worth a line a few seconds after it was first seen Pending, and within half its bind timeout", () => {
    assert.equal(pendingAfterMs(120), 5_000);
    assert.equal(pendingAfterMs(8), 4_000);
  });
});

describe("a colour that never became ready, read from the engine's report", () => {
  // The reports the provider (4.25.0) gave on the real API server: a new colour past its progress deadline,
  // and a snapshot that timed out while the held update listed the Deployments it never reached.
  const neverReady = [
    "  kubernetes:apps/v1:Deployment (app-green):",
    "    error: 4 errors occurred:",
    `    \t* resource "urn:pulumi:prod::shop::kubernetes:apps/v1:Deployment::app-green" was successfully created, but the Kubernetes API server reported that it failed to fully initialize or become live: 'shop-green' timed out waiting to be Ready`,
    "    \t* [MinimumReplicasUnavailable] Deployment does not have minimum availability.",
    `    \t* [ProgressDeadlineExceeded] ReplicaSet "shop-green-5d7df74564" has timed out progressing.`,
    "    \t* Minimum number of live Pods was not attained",
    "error: expected resource operations for urn:pulumi:prod::shop::kubernetes:core/v1:Service::service but none were seen",
  ].join("\n");
  const snapshotTimedOut = [
    "    error: 1 error occurred:",
    `    \t* resource "urn:pulumi:prod::shop::kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshot::snapshot-pre-v42" was successfully created, but the Kubernetes API server reported that it failed to fully initialize or become live: timed out waiting for the condition`,
    "error: expected resource operations for urn:pulumi:prod::shop::kubernetes:apps/v1:Deployment::app-green but none were seen",
  ].join("\n");

  it("names the colour, its Deployment and the progress deadline it passed", () => {
    assert.equal(explainKubernetesNotReady(neverReady), `its green Deployment shop-green did not get its pods ready: [ProgressDeadlineExceeded] ReplicaSet "shop-green-5d7df74564" has timed out progressing`);
    const updated = `error: 1 error occurred:\n* the Kubernetes API server reported that "shop/shop-blue" failed to fully initialize or become live: [MinimumReplicasUnavailable] Deployment does not have minimum availability.`;
    assert.equal(explainKubernetesNotReady(updated), "its blue Deployment shop-blue did not get its pods ready: [MinimumReplicasUnavailable] Deployment does not have minimum availability");
  });

  it("is not fooled by another resource's failure in a report that mentions a Deployment", () => {
    assert.equal(explainKubernetesNotReady(snapshotTimedOut), undefined);
  });
});
