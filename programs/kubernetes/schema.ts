import { z } from "zod";
import { releaseConfigShape } from "../release-config";
import type { ProgramConfigSpec } from "../types";

// Object names derive from these (`<app>-blue`, `<app>-migrate-<n>`): RFC 1123 labels, lowercase.
const label = (max: number) =>
  z.string().max(max).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a lowercase RFC 1123 label (a-z, 0-9, -)");

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
    publicUrl: z.string().url().optional(),
  })
  .strict();

/** The Kubernetes program's config (project namespace): `target`, and per release `replicas`, `imageTag`. */
export const kubernetesConfigSchema = z.object({ target: kubernetesTargetSchema, ...releaseConfigShape }).strict();

/** The Kubernetes target's config declaration; `kubernetes:*` and `random:*` belong to its providers. */
export const kubernetesConfig: ProgramConfigSpec = { schema: kubernetesConfigSchema, providerNamespaces: ["kubernetes", "random"] };
