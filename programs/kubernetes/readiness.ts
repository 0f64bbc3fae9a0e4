import type { ReadinessFinding, ReadinessRequest } from "../types";
import { kubeClient } from "./api";
import { kubernetesTargetSchema } from "./schema";

/** An image reference as the container runtime parses it: `[registry/]path[:tag][@digest]`. */
const imageReference = /^(?:[a-z0-9.-]+(?::\d+)?\/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

/** The status code of a failed request of `kubeClient` (its errors say `… answered 404 …`), else undefined. */
function statusOf(err: unknown): number | undefined {
  const m = /^GET \S+: (\d{3}) /.exec((err as Error).message ?? "");
  return m ? Number(m[1]) : undefined;
}

/**
 * The Kubernetes target's answer to "can the stack go back to this version now": the release's image
 * reference, and the cluster objects the program relies on — the namespace, the StorageClass, the
 * VolumeSnapshot CRDs and class — and, when the rollback restores the database, a ready VolumeSnapshot of
 * the snapshot it restores from. Whether the registry still holds the image is not visible from the
 * API server, and the finding says so.
 */
export async function checkKubernetesReadiness(request: ReadinessRequest): Promise<ReadinessFinding[]> {
  const parsed = kubernetesTargetSchema.safeParse(request.config.target);
  if (!parsed.success) return [{ leg: "artifacts", ok: false, detail: "the target settings (target) could not be read" }];
  const t = parsed.data;
  const image = `${t.imageRepository}:${String(request.config.imageTag ?? request.version)}`;
  const problems: string[] = [];
  const seen: string[] = [];
  if (!imageReference.test(image)) problems.push(`${image} is not a valid image reference`);
  const api = kubeClient(request.config);
  const exists = async (what: string, path: string) => {
    try {
      await api.get(path);
      seen.push(what);
    } catch (err) {
      problems.push(statusOf(err) === 404 ? `the cluster has no ${what}` : `${what} could not be read: ${(err as Error).message.split("\n")[0]}`);
    }
  };
  await exists(`namespace ${t.namespace}`, `/api/v1/namespaces/${t.namespace}`);
  if (t.storageClass) await exists(`StorageClass ${t.storageClass}`, `/apis/storage.k8s.io/v1/storageclasses/${t.storageClass}`);
  if (t.volumeSnapshotClass) {
    await exists("VolumeSnapshot CRD", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/volumesnapshots.snapshot.storage.k8s.io");
    await exists(`VolumeSnapshotClass ${t.volumeSnapshotClass}`, `/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses/${t.volumeSnapshotClass}`);
  }
  const findings: ReadinessFinding[] = [
    problems.length
      ? { leg: "artifacts", ok: false, detail: problems.join("; ") }
      : { leg: "artifacts", ok: true, detail: `image ${image} (the registry is not asked); the cluster has ${seen.join(", ")}` },
  ];
  if (request.restore) findings.push(await snapshotFinding(api, t.namespace, request.restore.snapshot));
  return findings;
}

async function snapshotFinding(api: ReturnType<typeof kubeClient>, namespace: string, snapshot: string): Promise<ReadinessFinding> {
  try {
    const list = (await api.get(
      `/apis/snapshot.storage.k8s.io/v1/namespaces/${namespace}/volumesnapshots?labelSelector=${encodeURIComponent(`stackpin.dev/snapshot=${snapshot}`)}`,
    )) as { items?: Array<{ metadata: { name: string; creationTimestamp?: string }; status?: { readyToUse?: boolean; restoreSize?: string; error?: { message?: string } } }> };
    const items = (list.items ?? []).sort((a, b) => String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)));
    const ready = items.filter((i) => i.status?.readyToUse === true).pop();
    if (ready) return { leg: "database", ok: true, detail: `restore from VolumeSnapshot ${ready.metadata.name}: ready to use${ready.status?.restoreSize ? ` (${ready.status.restoreSize})` : ""}` };
    const newest = items.pop();
    return {
      leg: "database",
      ok: false,
      detail: newest
        ? `VolumeSnapshot ${newest.metadata.name} of ${snapshot} is not ready to use${newest.status?.error?.message ? `: ${newest.status.error.message}` : ""}`
        : `the cluster has no VolumeSnapshot of ${snapshot} (label stackpin.dev/snapshot=${snapshot}) in ${namespace}`,
    };
  } catch (err) {
    return { leg: "database", ok: false, detail: `the VolumeSnapshots could not be read: ${(err as Error).message.split("\n")[0]}` };
  }
}
