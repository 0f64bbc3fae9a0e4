import { strict as assert } from "node:assert";
import type { StackOutput, StateResource } from "../../lib/engine/stack";
import { describeDestroyData, destroyData } from "../../lib/operations/destroy";
import { dataAtRisk, dataKindOf, dataOnDestroy, ResourceRef } from "../../lib/planning/data-resources";

const urn = (type: string, name: string) => `urn:pulumi:prod::shop::${type}::${name}`;
const res = (type: string, name: string, extra: Omit<ResourceRef, "urn" | "type"> = {}): StateResource => ({ urn: urn(type, name), type, outputs: {}, ...extra });

const PVC = "kubernetes:core/v1:PersistentVolumeClaim";
const VOLUME_SNAPSHOT = "kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshot";
const LOCAL_SNAPSHOT = "pulumi-nodejs:dynamic/stackpin-local:PostgresSnapshot";
const LOCAL_RESTORE = "pulumi-nodejs:dynamic/stackpin-local:PointInTimeRestore";
const WAL = "pulumi-nodejs:dynamic/stackpin-local:WalArchive";
const k8sMeta = (name: string, extra: Record<string, unknown> = {}) => ({ outputs: { metadata: { name, namespace: "shop" }, ...extra } });

describe("data-holding resources: what a destroy or a delete does to data", () => {
  it("classifies volumes, databases, snapshots and WAL archives by type token; everything else holds no data", () => {
    const kinds = Object.fromEntries(
      [
        PVC,
        VOLUME_SNAPSHOT,
        "aws:rds/instance:Instance",
        "aws:rds/cluster:Cluster",
        "aws:rds/snapshot:Snapshot",
        "aws:rds/clusterSnapshot:ClusterSnapshot",
        LOCAL_SNAPSHOT,
        LOCAL_RESTORE,
        WAL,
        "kubernetes:apps/v1:Deployment",
        "kubernetes:core/v1:Secret",
        "aws:rds/subnetGroup:SubnetGroup",
        "pulumi-nodejs:dynamic/stackpin-local:LocalFile",
        "pulumi-nodejs:dynamic/stackpin:GeneratedSecret",
        "pulumi:pulumi:Stack",
        "toString",
      ].map((type) => [type, dataKindOf({ type }) ?? "-"]),
    );
    assert.deepEqual(kinds, {
      [PVC]: "volume",
      [VOLUME_SNAPSHOT]: "snapshot",
      "aws:rds/instance:Instance": "database",
      "aws:rds/cluster:Cluster": "database",
      "aws:rds/snapshot:Snapshot": "snapshot",
      "aws:rds/clusterSnapshot:ClusterSnapshot": "snapshot",
      [LOCAL_SNAPSHOT]: "snapshot",
      [LOCAL_RESTORE]: "database",
      [WAL]: "wal-archive",
      "kubernetes:apps/v1:Deployment": "-",
      "kubernetes:core/v1:Secret": "-",
      "aws:rds/subnetGroup:SubnetGroup": "-",
      "pulumi-nodejs:dynamic/stackpin-local:LocalFile": "-",
      "pulumi-nodejs:dynamic/stackpin:GeneratedSecret": "-",
      "pulumi:pulumi:Stack": "-",
      toString: "-",
    });
  });

  it("a Kubernetes stack: the primary volume not retained is deleted, retained ones stay in the cluster, named as kubectl shows them", () => {
    const data = dataOnDestroy([
      res("pulumi:pulumi:Stack", "shop-prod"),
      res("kubernetes:apps/v1:Deployment", "database", k8sMeta("shop-database")),
      res(PVC, "data", k8sMeta("shop-data")),
      res(PVC, "restore-pre-v42-1", { ...k8sMeta("shop-restore-pre-v42-1", { spec: { dataSource: { kind: "VolumeSnapshot", name: "shop-pre-v42" } } }), retainOnDelete: true }),
      res(VOLUME_SNAPSHOT, "snapshot-pre-v42", { ...k8sMeta("shop-pre-v42"), retainOnDelete: true }),
    ]);
    assert.deepEqual(
      data.map((d) => [d.label, d.kind, d.fate, d.where]),
      [
        ["restored volume shop/shop-restore-pre-v42-1", "volume", "retained", "the cluster"],
        ["volume shop/shop-data", "volume", "deleted", "the cluster"],
        ["snapshot shop/shop-pre-v42", "snapshot", "retained", "the cluster"],
      ],
    );
    assert.equal(data[1].urn, urn(PVC, "data"));
  });

  it("an AWS stack: deletion protection makes the delete fail, retainOnDelete leaves it in the account", () => {
    const data = dataOnDestroy([
      res("aws:rds/instance:Instance", "db", { outputs: { identifier: "shop-prod-db", deletionProtection: true } }),
      res("aws:rds/instance:Instance", "restore-pre-v42-1", { outputs: { identifier: "shop-prod-db-r-pre-v42-1", restoreToPointInTime: { restoreTime: "t" }, deletionProtection: true }, retainOnDelete: true }),
      res("aws:rds/snapshot:Snapshot", "snapshot-pre-v42", { outputs: { dbSnapshotIdentifier: "shop-prod-pre-v42" }, retainOnDelete: true }),
      res("aws:rds/cluster:Cluster", "cluster", { outputs: { clusterIdentifier: "shop-aurora" } }),
    ]);
    assert.deepEqual(
      data.map((d) => [d.label, d.fate, d.where]),
      [
        ["database cluster shop-aurora", "deleted", "the AWS account"],
        ["database shop-prod-db", "protected", "the AWS account"],
        ["restored database shop-prod-db-r-pre-v42-1", "retained", "the AWS account"],
        ["snapshot shop-prod-pre-v42", "retained", "the AWS account"],
      ],
    );
  });

  it("the local program: snapshots, restores and the WAL archive are deleted (their removal is the approved act)", () => {
    const data = dataOnDestroy([
      res(LOCAL_SNAPSHOT, "snapshot-pre-v2", { outputs: { name: "pre-v2", path: "/s/pre-v2" } }),
      res(LOCAL_RESTORE, "restore-pre-v2-20261124053000000"),
      res(WAL, "restore-wal-archive", { outputs: { dir: "/r/wal-archive" } }),
      res("pulumi-nodejs:dynamic/stackpin-local:ManagedProcess", "slot-blue"),
    ]);
    assert.deepEqual(
      data.map((d) => [d.label, d.fate, d.where]),
      [
        ["restored database restore-pre-v2-20261124053000000", "deleted", "this machine"],
        ["snapshot pre-v2", "deleted", "this machine"],
        ["WAL archive /r/wal-archive", "deleted", "this machine"],
      ],
    );
  });

  it("names fall back to the URN when outputs are missing or secret", () => {
    const secret = { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", ciphertext: "x" };
    const data = dataOnDestroy([res(PVC, "data", { outputs: { metadata: { name: secret } } }), res(LOCAL_SNAPSHOT, "snapshot-pre-v3")]);
    assert.deepEqual(data.map((d) => d.label), ["volume data", "snapshot pre-v3"]);
  });

  it("Pulumi's protect comes first, retained or not: the engine refuses to delete it", () => {
    assert.equal(dataOnDestroy([res(PVC, "data", { protect: true })])[0].fate, "protected");
    assert.equal(dataOnDestroy([res(PVC, "data", { protect: true, retainOnDelete: true })])[0].fate, "protected");
  });

  it("preview steps: only deletes and replaces of data not retained or protected put it at risk, once per resource", () => {
    const step = (op: string, type: string, name: string, extra: Omit<ResourceRef, "urn" | "type"> = {}) => ({ op, urn: urn(type, name), type, name, ...extra });
    const risky = dataAtRisk([
      step("update", PVC, "grown"),
      step("create", PVC, "new"),
      step("same", PVC, "untouched"),
      step("replace", PVC, "data", k8sMeta("shop-data")),
      step("delete-replaced", PVC, "data", k8sMeta("shop-data")),
      step("delete", VOLUME_SNAPSHOT, "snapshot-pre-v42", { retainOnDelete: true }),
      step("delete", "aws:rds/instance:Instance", "db", { protect: true }),
      step("delete", LOCAL_SNAPSHOT, "snapshot-pre-v2"),
      step("delete", "kubernetes:apps/v1:Deployment", "app-green"),
    ]);
    assert.deepEqual(risky.map((d) => [d.label, d.fate]), [["volume shop/shop-data", "deleted"], ["snapshot pre-v2", "deleted"]]);
    assert.deepEqual(dataAtRisk([]), []);
  });
});

describe("destroy's data decision, from the checkpoint and the outputs", () => {
  const none: Record<string, StackOutput> = {};

  it("a stack holding no data needs no approval", () => {
    assert.deepEqual(destroyData([res("kubernetes:apps/v1:Deployment", "app-blue")], none), []);
    assert.equal(describeDestroyData([]), "");
  });

  it("says what is deleted and what is left in the cluster, by name", () => {
    const data = destroyData(
      [
        res(PVC, "data", k8sMeta("shop-data")),
        res(PVC, "restore-1", { ...k8sMeta("shop-restore-1"), retainOnDelete: true }),
        res(VOLUME_SNAPSHOT, "snapshot-pre-v42", { ...k8sMeta("shop-pre-v42"), retainOnDelete: true }),
      ],
      { databaseSnapshots: { value: { "pre-v42": {} }, secret: false }, databaseInstances: { value: { primary: {}, "restore-1": { source: "primary" } }, secret: false } },
    );
    assert.equal(
      describeDestroyData(data),
      "deletes volume shop/shop-data; leaves volume shop/shop-restore-1, snapshot shop/shop-pre-v42 in the cluster (retained on delete: they keep their data and the stack no longer manages them)",
    );
  });

  it("a retained primary volume alone is still named: it leaves the stack", () => {
    const data = destroyData([res(PVC, "data", { ...k8sMeta("shop-data"), retainOnDelete: true })], none);
    assert.equal(describeDestroyData(data), "leaves volume shop/shop-data in the cluster (retained on delete: it keeps its data and the stack no longer manages it)");
  });

  it("snapshots and restores a program declares only in its outputs count as deleted", () => {
    const data = destroyData([res("pulumi:pulumi:Stack", "checkout-prod"), res("custom:db:Backup", "nightly")], {
      databaseSnapshots: { value: { nightly: {}, "pre-v2": {} }, secret: false },
      databaseInstances: { value: { primary: {}, "restore-a": { source: "primary" } }, secret: false },
    });
    assert.equal(describeDestroyData(data), "deletes restored database restore-a, snapshot nightly, snapshot pre-v2");
    assert.ok(data.every((d) => d.urn === urn("pulumi:pulumi:Stack", "checkout-prod")));
  });

  it("the local program's snapshot and restore are listed once, from their resources", () => {
    const data = destroyData([res(LOCAL_SNAPSHOT, "snapshot-pre-v2", { outputs: { name: "pre-v2" } }), res(LOCAL_RESTORE, "restore-x")], {
      databaseSnapshots: { value: { "pre-v2": {} }, secret: false },
      databaseInstances: { value: { primary: {}, "restore-x": { source: "primary" } }, secret: false },
    });
    assert.equal(describeDestroyData(data), "deletes restored database restore-x, snapshot pre-v2");
  });

  it("a protected one is named as where the destroy will fail", () => {
    const data = destroyData([res("aws:rds/instance:Instance", "db", { outputs: { identifier: "shop-prod-db", deletionProtection: true } })], none);
    assert.equal(describeDestroyData(data), "cannot delete database shop-prod-db (protected: the destroy fails there)");
  });
});
