import * as z from "zod";
import { releaseConfigShape } from "../release-config";
import type { ProgramConfigSpec } from "../types";

// Object names derive from these (`<app>-blue`, `<app>-migrate-<n>`): RFC 1123 labels, lowercase.
const label = (max: number) =>
  z.string().max(max).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a lowercase RFC 1123 label (a-z, 0-9, -)");

/** How long a claim may take to bind unless `target.claimBindSeconds` says otherwise (the provider's own wait is 5 minutes). */
export const defaultClaimBindSeconds = 120;

/** The Kubernetes target's settings, the `target` config key (see `programs/kubernetes/index.ts`). */
export const kubernetesTargetSchema = z
  .object({
    namespace: label(63),
    app: label(40),
    imageRepository: z.string().min(1),
    containerPort: z.number().int().min(1).max(65_535).optional(),
    storageClass: z.string().min(1).optional(),
    volumeSnapshotClass: z.string().min(1).optional(),
    dataSize: z.string().regex(/^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/, "must be a quantity like 10Gi").optional(),
    databaseImage: z.string().min(1).optional(),
    progressDeadlineSeconds: z.number().int().min(1).optional(),
    snapshotReadySeconds: z.number().int().min(1).optional(),
    claimBindSeconds: z.number().int().min(1).optional(),
    publicUrl: z.string().url().optional(),
  })
  .strict();

/** The Kubernetes program's config (project namespace): `target`, and per release `replicas`, `imageTag`. */
export const kubernetesConfigSchema = z.object({ target: kubernetesTargetSchema, ...releaseConfigShape }).strict();

/**
 * The Kubernetes name a version's secret gets (`<app>-<colour>-<this>`): the API server takes only
 * lowercase RFC 1123 names, so `apiKey` becomes `api-key` and `db_password` `db-password`. Checked when
 * the version file is read (exit 5 naming the secret), so no name the API server refuses reaches it.
 */
export const kubernetesSecretName = z
  .string()
  .transform((name) =>
    name
      .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
      .replace(/_/g, "-")
      .toLowerCase(),
  )
  .pipe(
    z
      .string()
      .max(40)
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "its Kubernetes name must be a lowercase RFC 1123 label (letters, digits, inner - or _)"),
  );

/** The Kubernetes target's config declaration; `kubernetes:*` belongs to its provider. */
export const kubernetesConfig: ProgramConfigSpec = {
  schema: kubernetesConfigSchema,
  providerNamespaces: ["kubernetes"],
  secretName: kubernetesSecretName,
};

/**
 * The preflight reads of the program (the StorageClass, the VolumeSnapshotClass) fail in the engine with
 * the provider's "resource 'x' does not exist"; this says which kind of object is missing and how to
 * provide it.
 */
export function explainKubernetesFailure(report: string): string | undefined {
  const missing = /resource '([^']+)' does not exist/.exec(report)?.[1];
  if (!missing) return undefined;
  if (/StorageClass \(storage-class\)/.test(report)) {
    return `the cluster has no StorageClass "${missing}" (target.storageClass): create it, with a provisioner or pre-made PersistentVolumes, or name one that exists (\`kubectl get storageclass\`).`;
  }
  if (/VolumeSnapshotClass \(volume-snapshot-class\)/.test(report)) {
    return `the cluster has no VolumeSnapshotClass "${missing}" (target.volumeSnapshotClass): snapshots need the snapshot.storage.k8s.io CRDs, the snapshot controller, a CSI driver that supports snapshots and the class (\`kubectl get volumesnapshotclass\`).`;
  }
  return undefined;
}

/**
 * A colour's Deployment that never became ready fails the provider's await (a rollout past its
 * `progressDeadlineSeconds`, or pods that never got ready before the resource's timeout): this says which
 * colour and what the Deployment reported, so that the failure reads as the readiness gate it is.
 */
export function explainKubernetesNotReady(report: string): string | undefined {
  // The error item of the resource that failed (not the planned steps an update held to a plan never reached).
  const failed = report
    .split("\n")
    .find((l) => /failed to fully initialize or become live/.test(l) && /Deployment::app-(blue|green)"|"[^"\s/]+\/[^"\s]+-(blue|green)"/.test(l));
  if (!failed) return undefined;
  const said = [...report.matchAll(/\[(ProgressDeadlineExceeded|MinimumReplicasUnavailable)\] ([^\n]*)/g)];
  if (!said.length && !/Minimum number of live Pods was not attained/.test(report)) return undefined;
  const slot = /(?:::app-|-)(blue|green)"/.exec(failed)?.[1];
  const name = /'([^']+)' timed out waiting to be Ready/.exec(failed)?.[1] ?? /"[^"\s/]+\/([^"\s]+)"/.exec(failed)?.[1];
  const why = said.find((m) => m[1] === "ProgressDeadlineExceeded") ?? said[0];
  return (
    `its ${slot} Deployment${name ? ` ${name}` : ""} did not get its pods ready` +
    (why ? `: [${why[1]}] ${why[2].trim().replace(/\.$/, "")}` : ": the minimum number of live pods was not attained")
  );
}
