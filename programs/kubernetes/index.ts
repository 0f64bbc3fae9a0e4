import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { normalizePlan, PRIMARY } from "../../lib/planning/database";
import { GeneratedSecret } from "../generated-secret";
import type { ProgramFactory } from "../types";
import type { SlotRelease } from "../../lib/planning/rollout";
import { imageFor, readStackpinConfig, runningSlots } from "../stackpin-config";
import { restoreCheckScript } from "./restore-check";
import { defaultClaimBindSeconds, kubernetesSecretName, kubernetesTargetSchema } from "./schema";

/** The Kubernetes target's settings: the `target` config key (project namespace). */
interface KubernetesSettings {
  /** The namespace everything goes in (it must exist). */
  namespace: string;
  /** The app's name; labels and resource names derive from it. */
  app: string;
  /** Container image repository; the tag is the version (or a release's `imageTag`). */
  imageRepository: string;
  containerPort?: number;
  /** The data volume: a PVC of this size and storage class; snapshots use the snapshot class. */
  storageClass?: string;
  volumeSnapshotClass?: string;
  dataSize?: string;
  /** The database image run against the data volume (default postgres:15). */
  databaseImage?: string;
  /**
   * How long a colour's rollout may go without progress before it fails (Kubernetes' default is 600 s).
   * The provider only warns on `ProgressDeadlineExceeded` and waits out its own 10-minute timeout, so
   * this bounds that too: the apply then fails, and `--auto-rollback` rolls back, the Service never moved.
   */
  progressDeadlineSeconds?: number;
  /**
   * How long a new VolumeSnapshot may take to become `readyToUse` (default 600 s). The migration after it
   * waits for that: a snapshot that never gets there (no snapshot controller, no CSI driver, a wrong
   * class) fails the apply with nothing migrated.
   */
  snapshotReadySeconds?: number;
  /**
   * How long a new claim (the data volume, a restore's volume) may take to bind (default 120 s). The
   * provider waits for it, silently; past this the apply fails, and stackpin says why the claim is Pending.
   */
  claimBindSeconds?: number;
  /** A URL stackpin can reach the Service through (an Ingress); without it, verification is skipped. */
  publicUrl?: string;
}

/**
 * The Kubernetes target: a Deployment per colour with the image pinned to its release, a Service whose
 * selector is the traffic switch, readiness probes from the verification settings, a Secret per colour
 * and rotating secret carrying its generation, VolumeSnapshots of the data volume before incompatible versions, and a
 * restore as a new volume from a snapshot that the database then runs on.
 */
export const kubernetesProgram: ProgramFactory = () => async () => {
  const sp = readStackpinConfig();
  // The same schema checked the version file before the engine ran; here it types what the program reads.
  const s: KubernetesSettings = kubernetesTargetSchema.parse(new pulumi.Config().requireObject("target"));
  const port = s.containerPort ?? 8080;
  const meta = (name: string, labels: Record<string, string> = {}) => ({ name, namespace: s.namespace, labels: { app: s.app, ...labels } });

  // Preflight: what the program needs from the cluster is read before anything is created, so a missing
  // StorageClass fails in seconds naming it (not after the provider's 5-minute wait on an unbound claim),
  // in `preview` too. Everything below depends on these reads.
  const db = normalizePlan(sp.database);
  const storageClass = s.storageClass ? k8s.storage.v1.StorageClass.get("storage-class", s.storageClass) : undefined;
  const snapshotClass =
    s.volumeSnapshotClass && db && (db.snapshots.length || db.takeSnapshot)
      ? k8s.apiextensions.CustomResource.get("volume-snapshot-class", {
          apiVersion: "snapshot.storage.k8s.io/v1",
          kind: "VolumeSnapshotClass",
          id: s.volumeSnapshotClass,
        })
      : undefined;
  const preflight = [storageClass, snapshotClass].filter((r): r is k8s.storage.v1.StorageClass | k8s.apiextensions.CustomResource => r !== undefined);

  // A value per rotating secret, new only when its generation rises (stackpin never lowers it).
  const values = Object.entries(sp.secrets).map(([name, generation]) => ({
    name,
    generation,
    value: new GeneratedSecret(`${name}-value`, { generation }, { dependsOn: preflight }),
  }));
  // Every volume and snapshot holds data: removed from the stack (only by an approved `snapshot rm` or
  // `destroy --approve-data-loss`), it stays in the cluster. Snapshots and restored volumes are declared
  // from the stack's record.
  const keep: pulumi.CustomResourceOptions = { retainOnDelete: true };
  // How long a new claim may take to bind. The provider's own wait for a claim ignores customTimeouts (5
  // minutes, fixed); asked to wait for the phase Bound (`pulumi.com/waitFor`) it waits within them. A class
  // that binds on first use (WaitForFirstConsumer) leaves its claims Pending until a pod uses them: those
  // are not waited for, nor are claims whose class the program does not read (none set: the default one).
  const bindWithin: pulumi.CustomTimeouts = { create: `${s.claimBindSeconds ?? defaultClaimBindSeconds}s` };
  const bindAwait = pulumi
    .output(storageClass?.volumeBindingMode)
    .apply((mode): Record<string, string> => (mode === "Immediate" ? { "pulumi.com/waitFor": "jsonpath={.status.phase}=Bound" } : {}));
  const volume = new k8s.core.v1.PersistentVolumeClaim(
    "data",
    {
      metadata: { ...meta(`${s.app}-data`), annotations: bindAwait },
      spec: { accessModes: ["ReadWriteOnce"], storageClassName: s.storageClass, resources: { requests: { storage: s.dataSize ?? "10Gi" } } },
    },
    { ...keep, dependsOn: preflight, customTimeouts: bindWithin },
  );
  const claimOf = (instance: string) => (instance === PRIMARY ? `${s.app}-data` : `${s.app}-${instance}`);
  // A snapshot's object is named by the attempt that took it: a retry makes its own, never the failed one's.
  const snapshotObject = (name: string) => {
    const record = db?.snapshots.find((x) => x.name === name);
    return `${s.app}-${name}${record?.attempt ? `-r${record.attempt}` : ""}`;
  };
  const snapshots = Object.fromEntries(
    (db?.snapshots ?? []).map((snap) => [
      snap.name,
      new k8s.apiextensions.CustomResource(
        `snapshot-${snap.name}`,
        {
          apiVersion: "snapshot.storage.k8s.io/v1",
          kind: "VolumeSnapshot",
          metadata: {
            ...meta(snapshotObject(snap.name), { "stackpin.dev/version": snap.version, "stackpin.dev/snapshot": snap.name }),
            // The provider waits for this (it does not wait on custom resources otherwise).
            annotations: { "pulumi.com/waitFor": "jsonpath={.status.readyToUse}=true", "pulumi.com/timeoutSeconds": String(s.snapshotReadySeconds ?? 600) },
          },
          // Taken from the volume the database ran on then: the primary's, or a restored one.
          spec: { volumeSnapshotClassName: s.volumeSnapshotClass, source: { persistentVolumeClaimName: claimOf(snap.source) } },
        },
        { ...keep, dependsOn: [volume, ...preflight] },
      ),
    ]),
  );
  // Kubernetes restores whole snapshots: each restore is a volume of its own from the snapshot stackpin chose.
  const claims: Record<string, k8s.core.v1.PersistentVolumeClaim> = { [PRIMARY]: volume };
  for (const r of (db?.restores ?? []).filter((x) => !x.removed)) {
    claims[r.name] = new k8s.core.v1.PersistentVolumeClaim(
      r.name,
      {
        metadata: { ...meta(claimOf(r.name)), annotations: bindAwait.apply((a) => ({ ...a, "stackpin.dev/restore-time": r.time, "stackpin.dev/source": r.source })) },
        spec: {
          accessModes: ["ReadWriteOnce"],
          storageClassName: s.storageClass,
          resources: { requests: { storage: s.dataSize ?? "10Gi" } },
          dataSource: { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: snapshotObject(r.snapshot) },
        },
      },
      { ...keep, dependsOn: snapshots[r.snapshot] ? [snapshots[r.snapshot]] : [], customTimeouts: bindWithin },
    );
  }
  // The restore made in this apply is checked before the database moves to it (a claim restored from a
  // snapshot no CSI driver filled binds just the same, empty): a Job starts PostgreSQL on the restored
  // volume and compares the schema it holds with the snapshot's. A failed check fails the update with
  // the database still on the instance it was on; the next attempt replaces the failed Job.
  const made = db?.restore && claims[db.restore.name] ? db.restore : undefined;
  const databaseImage = s.databaseImage ?? "postgres:15";
  const restoreCheck = made
    ? new k8s.batch.v1.Job(
        `check-${made.name}`,
        {
          metadata: {
            // Job names become pod labels (63 characters at most): the restore's name is in the annotations.
            ...meta(`${s.app}-check-${createHash("sha256").update(made.name).digest("hex").slice(0, 10)}`, { "stackpin.dev/check": "restore" }),
            annotations: { "stackpin.dev/restore": made.name, "stackpin.dev/snapshot": made.snapshot, "pulumi.com/replaceUnready": "true" },
          },
          spec: {
            backoffLimit: 0,
            template: {
              metadata: { labels: { app: s.app, "stackpin.dev/check": "restore" } },
              spec: {
                restartPolicy: "Never",
                containers: [
                  {
                    name: "check",
                    image: databaseImage,
                    command: ["sh", "-c", restoreCheckScript],
                    // The refusal the script prints reaches the provider's error through the termination message.
                    terminationMessagePolicy: "FallbackToLogsOnError",
                    env: [
                      { name: "PGDATA", value: "/var/lib/postgresql/data" },
                      { name: "RESTORE", value: made.name },
                      { name: "SNAPSHOT", value: made.snapshot },
                      { name: "EXPECT_SCHEMA", value: String(db!.snapshots.find((x) => x.name === made.snapshot)?.schema ?? "") },
                      { name: "DATABASE", value: "postgres" },
                    ],
                    volumeMounts: [{ name: "data", mountPath: "/var/lib/postgresql/data" }],
                  },
                ],
                volumes: [{ name: "data", persistentVolumeClaim: { claimName: claims[made.name].metadata.name } }],
              },
            },
          },
        },
        { dependsOn: [claims[made.name]] },
      )
    : undefined;
  const dataClaim = (claims[db?.live ?? PRIMARY] ?? volume).metadata.name;
  const database = new k8s.apps.v1.Deployment(
    "database",
    {
      metadata: meta(`${s.app}-database`),
      spec: {
        replicas: 1,
        strategy: { type: "Recreate" },
        selector: { matchLabels: { app: s.app, role: "database" } },
        template: {
          metadata: { labels: { app: s.app, role: "database" } },
          spec: {
            containers: [{ name: "postgres", image: databaseImage, volumeMounts: [{ name: "data", mountPath: "/var/lib/postgresql/data" }] }],
            volumes: [{ name: "data", persistentVolumeClaim: { claimName: dataClaim } }],
          },
        },
      },
    },
    // It moves to a restored volume only once that volume passed its check.
    { dependsOn: restoreCheck ? [restoreCheck] : [] },
  );
  // The migration runs after the snapshot before it: the Job names the snapshot, so it cannot start earlier.
  const taken = db?.takeSnapshot ? snapshots[db.takeSnapshot] : undefined;
  const migration = db
    ? new k8s.batch.v1.Job(
        `migrate-${db.schema}`,
        {
          metadata: {
            // One Job per schema and database instance: a restore's database gets its own run.
            ...meta(`${s.app}-migrate-${db.schema}${db.live === PRIMARY ? "" : `-${createHash("sha256").update(db.live).digest("hex").slice(0, 10)}`}`),
            annotations: { "stackpin.dev/after-snapshot": taken ? taken.metadata.name : "", "stackpin.dev/policy": db.policy },
          },
          spec: {
            backoffLimit: 0,
            template: {
              spec: {
                restartPolicy: "Never",
                containers: [
                  {
                    name: "migrate",
                    image: imageFor(s.imageRepository, sp.rollout.slots[sp.rollout.active]!),
                    args: ["migrate", "--to-schema", String(db.schema), ...(db.downs.length ? ["--allow-down"] : [])],
                  },
                ],
              },
            },
          },
        },
        // The image is the active colour's and the snapshot the last one taken: both change with colours
        // and versions at the same schema. A Job's template cannot change (a change replaces the Job, and
        // it runs again), so they are left as the first run had them: a migration runs once.
        { dependsOn: [database], ignoreChanges: ["spec.template", "metadata.annotations"] },
      )
    : undefined;

  // One Secret per secret and generation, read by both colours: a generation that rises makes a new
  // Secret (a new name, so it is created before the old one goes) and rolls each colour's pods onto it —
  // the colour that takes no traffic too, so a switch back to it has nothing to redeploy. A live colour
  // is rolled in place, a pod at a time with none taken away before its successor is ready: its objects
  // are never replaced, and its ready endpoints never drop.
  const secrets = values.map(({ name, generation, value }) => ({
    env: `SECRET_${name.toUpperCase().replace(/-/g, "_")}`,
    generation,
    secret: new k8s.core.v1.Secret(
      `secret-${name}`,
      {
        metadata: { ...meta(`${s.app}-${kubernetesSecretName.parse(name)}-g${generation}`), annotations: { "stackpin.dev/generation": String(generation) } },
        immutable: true,
        // `data`, not `stringData`: the provider turns `stringData` into `data` only once the value is
        // known, so the update would not match the plan its preview saved (the value unknown then).
        data: { value: value.value.apply((v) => Buffer.from(v).toString("base64")), generation: Buffer.from(String(generation)).toString("base64") },
      },
      // After a restore's check too: nothing of the app changes before the restored database is known to
      // hold what the snapshot held.
      { dependsOn: [...preflight, ...(restoreCheck ? [restoreCheck] : [])] },
    ),
  }));
  // One colour: a Deployment running its release, reading the current generation of every secret.
  const colour = (slot: string, release: SlotRelease, after: pulumi.Resource[]) =>
    new k8s.apps.v1.Deployment(
      `app-${slot}`,
      {
        metadata: meta(`${s.app}-${slot}`, { slot, version: release.version }),
        spec: {
          replicas: Number(release.config.replicas ?? 2),
          // A rolling update (new secrets on the live colour) never takes a ready pod away first.
          strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
          ...(s.progressDeadlineSeconds ? { progressDeadlineSeconds: s.progressDeadlineSeconds } : {}),
          selector: { matchLabels: { app: s.app, slot } },
          template: {
            metadata: {
              labels: { app: s.app, slot, version: release.version },
              // Environment from a Secret is read when a pod starts: a new generation rolls the pods.
              annotations: { "stackpin.dev/secret-generations": secrets.map((x) => `${x.env}=${x.generation}`).join(",") },
            },
            spec: {
              containers: [
                {
                  name: "app",
                  image: imageFor(s.imageRepository, release),
                  ports: [{ containerPort: port }],
                  env: [
                    { name: "STACKPIN_VERSION", value: release.version },
                    { name: "DATABASE_HOST", value: database.metadata.name },
                    ...secrets.map((x) => ({ name: x.env, valueFrom: { secretKeyRef: { name: x.secret.metadata.name, key: "value" } } })),
                  ],
                  readinessProbe: {
                    httpGet: { path: sp.verify.health.path, port },
                    periodSeconds: Math.max(1, Math.ceil(sp.verify.health.intervalMs / 1000)),
                    timeoutSeconds: Math.max(1, Math.ceil(sp.verify.health.timeoutMs / 1000)),
                    failureThreshold: sp.verify.health.retries + 1,
                  },
                },
              ],
            },
          },
        },
      },
      {
        dependsOn: [...(migration ? [migration] : []), ...after],
        // A little past the deadline, so the error names ProgressDeadlineExceeded.
        ...(s.progressDeadlineSeconds ? { customTimeouts: { create: `${s.progressDeadlineSeconds + 5}s`, update: `${s.progressDeadlineSeconds + 5}s` } } : {}),
      },
    );
  const running = runningSlots(sp.rollout);
  const active = running.find(([slot]) => slot === sp.rollout.active)!;
  const live = colour(active[0], active[1], []);
  // The traffic switch: the Service selects the active colour, after that colour's Deployment is ready.
  // That readiness is what the switch waits for; the provider's own wait on a Service (for endpoints,
  // polled: about 10 s on a change of selector here) adds nothing to it, so it is skipped.
  const service = new k8s.core.v1.Service(
    "service",
    {
      metadata: { ...meta(s.app), annotations: { "pulumi.com/skipAwait": "true" } },
      spec: { selector: { app: s.app, slot: sp.rollout.active }, ports: [{ port: 80, targetPort: port }] },
    },
    { dependsOn: [live] },
  );
  // The colour taking no traffic changes only after the switch: the Service has left it by then.
  for (const [slot, release] of running.filter(([slot]) => slot !== sp.rollout.active)) colour(slot, release, [service]);

  return {
    version: sp.version,
    activeSlot: sp.rollout.active,
    serviceUrl: pulumi.interpolate`http://${service.metadata.name}.${s.namespace}.svc.cluster.local`,
    ...(s.publicUrl ? { endpoint: s.publicUrl } : {}),
    secretGenerations: sp.secrets,
    databaseSnapshots: Object.fromEntries(
      Object.entries(snapshots).map(([name, snap]) => {
        const record = db!.snapshots.find((x) => x.name === name)!;
        // Through the id: a snapshot created in this update has no creationTimestamp in the preview (the
        // provider previews a create with its inputs), so the preview must say unknown, not absent, or the
        // update would not match the plan it saved.
        const takenAt = pulumi.all([snap.id, snap.metadata.creationTimestamp]).apply(([, t]) => t);
        return [name, { version: record.version, source: record.source, takenAt }];
      }),
    ),
    databaseInstances: Object.fromEntries(
      Object.entries(claims).map(([name, claim]) => {
        const r = db?.restores.find((x) => x.name === name);
        return [name, { claim: claim.metadata.name, ...(r ? { source: r.source, snapshot: r.snapshot, restoredTo: r.time, liveFrom: r.liveFrom } : {}) }];
      }),
    ),
  };
};
