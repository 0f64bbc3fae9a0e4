/**
 * Which resources hold data, and what deleting them really does, from what the engine knows about them
 * (type token, URN, outputs, and the `retainOnDelete` and `protect` options recorded in the state). Pure:
 * no I/O, so a guard can decide from it before anything runs.
 */

/** What a data-holding resource is: a disk, a database, a copy of one, or the WAL a restore replays. */
export type DataKind = "volume" | "database" | "snapshot" | "wal-archive";

/**
 * What deleting it does: `deleted` (its data is gone), `retained` (removed from the stack, left where it
 * is with its data: `retainOnDelete`), or `protected` (the delete fails: Pulumi's `protect`, or the
 * cloud's own deletion protection).
 */
export type DataFate = "deleted" | "retained" | "protected";

/** A resource as the state's checkpoint or a preview step's `old` state shows it. */
export interface ResourceRef {
  urn: string;
  /** The Pulumi type token, e.g. `kubernetes:core/v1:PersistentVolumeClaim`. */
  type: string;
  /** Its outputs, from which its name where it lives is read (`metadata.name`, `identifier`); optional. */
  outputs?: Record<string, unknown>;
  /** Recorded as `retainOnDelete`: a delete removes it from the stack and leaves it where it is. */
  retainOnDelete?: boolean;
  /** Recorded as `protect`: the engine refuses to delete it. */
  protect?: boolean;
}

/** A data-holding resource and what deleting it does. */
export interface DataResource {
  urn: string;
  type: string;
  kind: DataKind;
  /** How a person names it, with its name where it lives: `volume shop/shop-data`, `snapshot pre-v42`. */
  label: string;
  /** Where it lives, and stays when retained: `the cluster`, `the AWS account`, `this machine`. */
  where: string;
  fate: DataFate;
}

const localType = (name: string) => `pulumi-nodejs:dynamic/stackpin-local:${name}`;

// Type token → kind. The local program's dynamic resources carry their own type names
// (`pulumi.dynamic.Resource`'s module and type arguments), so the token alone tells them apart.
const kinds: Record<string, DataKind> = {
  "kubernetes:core/v1:PersistentVolumeClaim": "volume",
  "kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshot": "snapshot",
  "aws:rds/instance:Instance": "database",
  "aws:rds/cluster:Cluster": "database",
  "aws:rds/snapshot:Snapshot": "snapshot",
  "aws:rds/clusterSnapshot:ClusterSnapshot": "snapshot",
  [localType("PostgresSnapshot")]: "snapshot",
  [localType("PointInTimeRestore")]: "database",
  [localType("WalArchive")]: "wal-archive",
};

// The order people read them in: what holds the live data first, then its copies.
const kindOrder: DataKind[] = ["database", "volume", "snapshot", "wal-archive"];

// Ops whose step deletes the resource it names (a replacement deletes the old one, before or after).
const deletingOps = new Set(["delete", "replace", "delete-replaced"]);

/** The kind of data `resource` holds, or undefined when it holds none. */
export function dataKindOf(resource: Pick<ResourceRef, "type">): DataKind | undefined {
  return Object.prototype.hasOwnProperty.call(kinds, resource.type) ? kinds[resource.type] : undefined;
}

/**
 * Every data-holding resource among `resources` (a stack's checkpoint) with what a destroy does to it,
 * ordered as people read them (databases and volumes, then snapshots, then WAL archives; by label).
 */
export function dataOnDestroy(resources: readonly ResourceRef[]): DataResource[] {
  return sorted(resources.flatMap((r) => described(r)));
}

/**
 * The data-holding resources that `steps` (a preview's) really delete: a `delete`, `replace` or
 * `delete-replaced` of one that is neither retained nor protected. A step's `retainOnDelete` and
 * `protect` are its `old` state's (the engine's step event carries them in `metadata.old`).
 */
export function dataAtRisk(steps: ReadonlyArray<ResourceRef & { op: string }>): DataResource[] {
  // A replacement may show as more than one step: one line per resource.
  const deleting = new Map(steps.filter((s) => deletingOps.has(s.op)).map((s) => [s.urn, s]));
  return sorted([...deleting.values()].flatMap((s) => described(s)).filter((d) => d.fate === "deleted"));
}

function described(r: ResourceRef): DataResource[] {
  const kind = dataKindOf(r);
  if (!kind) return [];
  return [{ urn: r.urn, type: r.type, kind, label: labelOf(r, kind), where: whereOf(r.type), fate: fateOf(r) }];
}

function fateOf(r: ResourceRef): DataFate {
  // The engine checks `protect` before anything else, retained or not.
  if (r.protect) return "protected";
  if (r.retainOnDelete) return "retained";
  // RDS refuses to delete an instance or cluster with deletion protection on: the destroy fails there.
  if (r.type.startsWith("aws:rds/") && r.outputs?.deletionProtection === true) return "protected";
  return "deleted";
}

function whereOf(type: string): string {
  if (type.startsWith("kubernetes:")) return "the cluster";
  if (type.startsWith("aws:")) return "the AWS account";
  return "this machine";
}

/** A string output at `path`, or undefined (absent, or a secret the checkpoint keeps encrypted). */
function text(outputs: Record<string, unknown> | undefined, ...path: string[]): string | undefined {
  let v: unknown = outputs;
  for (const key of path) v = typeof v === "object" && v !== null ? (v as Record<string, unknown>)[key] : undefined;
  return typeof v === "string" && v ? v : undefined;
}

function labelOf(r: ResourceRef, kind: DataKind): string {
  const urnName = r.urn.split("::").pop() ?? r.urn;
  const o = r.outputs;
  if (r.type.startsWith("kubernetes:")) {
    const name = text(o, "metadata", "name") ?? urnName;
    const ns = text(o, "metadata", "namespace");
    const restored = text(o, "spec", "dataSource", "kind") === "VolumeSnapshot";
    return `${restored ? "restored " : ""}${kind === "volume" ? "volume" : "snapshot"} ${ns ? `${ns}/` : ""}${name}`;
  }
  switch (r.type) {
    case "aws:rds/instance:Instance":
      return `${o?.restoreToPointInTime ? "restored database" : "database"} ${text(o, "identifier") ?? urnName}`;
    case "aws:rds/cluster:Cluster":
      return `database cluster ${text(o, "clusterIdentifier") ?? urnName}`;
    case "aws:rds/snapshot:Snapshot":
      return `snapshot ${text(o, "dbSnapshotIdentifier") ?? urnName}`;
    case "aws:rds/clusterSnapshot:ClusterSnapshot":
      return `cluster snapshot ${text(o, "dbClusterSnapshotIdentifier") ?? urnName}`;
    case localType("PostgresSnapshot"):
      return `snapshot ${text(o, "name") ?? urnName.replace(/^snapshot-/, "")}`;
    case localType("PointInTimeRestore"):
      return `restored database ${urnName}`;
    default:
      return `WAL archive ${text(o, "dir") ?? urnName}`;
  }
}

function sorted(data: DataResource[]): DataResource[] {
  return data.sort((a, b) => kindOrder.indexOf(a.kind) - kindOrder.indexOf(b.kind) || a.label.localeCompare(b.label));
}
