import type { SwitchOutcome, SwitchRequest } from "../types";
import { kubeClient } from "./api";
import { kubernetesTargetSchema } from "./schema";

/** How long the endpoints may take to be all on the target slot before the switch reports it unsettled. */
const settleMs = 30_000;

/** Why a Deployment cannot take traffic now, or undefined when every replica is updated, ready and available. */
export function notReady(deployment: any, version: string): string | undefined {
  const name = deployment.metadata?.name;
  const runs = deployment.spec?.template?.metadata?.labels?.version;
  if (runs !== version) return `${name} runs ${runs ?? "an unknown version"}, not ${version}`;
  const want = deployment.spec?.replicas ?? 1;
  const s = deployment.status ?? {};
  if ((s.observedGeneration ?? 0) < (deployment.metadata?.generation ?? 0)) return `${name}'s newest spec is not rolled out yet`;
  if ((s.updatedReplicas ?? 0) < want || (s.replicas ?? 0) > want) return `${name} is rolling (${s.updatedReplicas ?? 0} of ${want} updated)`;
  if ((s.readyReplicas ?? 0) < want || (s.availableReplicas ?? 0) < want) return `${name} has ${s.readyReplicas ?? 0} of ${want} pods ready`;
  return undefined;
}

/** The field manager that owns a Service's `spec.selector` (the provider's), from its managed fields. */
export function selectorManager(service: any): string | undefined {
  const entries = (service.metadata?.managedFields ?? []) as Array<{ manager: string; operation: string; fieldsV1?: any }>;
  const owns = (e: { fieldsV1?: any }) => e.fieldsV1?.["f:spec"]?.["f:selector"] !== undefined;
  return (entries.find((e) => e.operation === "Apply" && owns(e)) ?? entries.find(owns))?.manager;
}

/**
 * The Kubernetes switch: when the slot's Deployment runs the version with every replica updated, ready
 * and available, the Service's selector moves to it (a merge patch under the field manager that owns the
 * selector, the provider's, and the object's resourceVersion, so a concurrent writer fails it), then the
 * Service's EndpointSlices are followed (a watch, not polls) until every ready endpoint is a pod of the
 * slot.
 */
export async function switchKubernetes(request: SwitchRequest): Promise<SwitchOutcome> {
  const parsed = kubernetesTargetSchema.safeParse(request.config.target);
  if (!parsed.success) return { moved: false, reason: "the target settings could not be read" };
  const { namespace, app } = parsed.data;
  const api = kubeClient(request.config);
  try {
    const deployment = await api.get(`/apis/apps/v1/namespaces/${namespace}/deployments/${app}-${request.slot}`);
    const why = notReady(deployment, request.version);
    if (why) return { moved: false, reason: why };
    const servicePath = `/api/v1/namespaces/${namespace}/services/${app}`;
    const service = await api.get(servicePath);
    const selector = { ...(service.spec?.selector ?? {}), slot: request.slot };
    let movedAt = Date.now();
    if (service.spec?.selector?.slot !== request.slot) {
      const manager = selectorManager(service) ?? "stackpin";
      const r = await api.request(
        "PATCH",
        `${servicePath}?fieldManager=${encodeURIComponent(manager)}`,
        { metadata: { resourceVersion: service.metadata.resourceVersion }, spec: { selector } },
        "application/merge-patch+json",
      );
      if (r.status !== 200) return { moved: false, reason: `the Service's selector could not be written: ${r.status} ${r.body?.message ?? ""}`.trim() };
      movedAt = Date.now();
    }
    const prefix = `${app}-${request.slot}-`;
    let ready = 0;
    const settledAt = await api
      .watch(
        `the ${app} Service's endpoints on the ${request.slot} slot`,
        `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${app}`)}`,
        (slices) => {
          const endpoints = slices.flatMap((s) => (s.endpoints ?? []) as any[]).filter((e) => e.conditions?.ready);
          ready = endpoints.length;
          return ready > 0 && endpoints.every((e) => String(e.targetRef?.name ?? "").startsWith(prefix)) ? Date.now() : undefined;
        },
        settleMs,
      )
      .catch(() => undefined);
    return {
      moved: true,
      movedAt,
      settledAt,
      detail: `Service ${namespace}/${app} selects slot=${request.slot}${settledAt ? `; its ${ready} ready endpoint${ready === 1 ? "" : "s"} are all ${request.slot} pods` : "; its endpoints had not all moved within 30 s"}`,
    };
  } finally {
    api.close();
  }
}
