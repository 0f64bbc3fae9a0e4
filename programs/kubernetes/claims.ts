/**
 * The stack's PersistentVolumeClaims, followed while an update runs. The provider waits for a claim to
 * bind and says nothing about why it does not (then only "Timeout occurred polling for …"); the volume
 * controller says why in the claim's events. This follows the claims labelled `app=<target.app>` and the
 * events about claims in the target namespace (two watches, no polling), and says why a claim is still
 * Pending a few seconds after it was first seen.
 */
import type { ApplyWatch, ApplyWatchRequest } from "../types";
import { kubeClient } from "./api";
import { defaultClaimBindSeconds, kubernetesTargetSchema } from "./schema";

/** A claim's event as the API holds it (`core/v1` Event), the fields read here. */
export interface ClaimEvent {
  reason?: string;
  message?: string;
  type?: string;
  lastTimestamp?: string | null;
  eventTime?: string | null;
  metadata?: { creationTimestamp?: string };
}

/** A claim as the API holds it, the fields read here. */
export interface ClaimView {
  metadata: { name: string; namespace?: string };
  spec?: { storageClassName?: string | null; accessModes?: string[]; resources?: { requests?: { storage?: string } } };
}

/** Why a claim is Pending, for people: `why` (with the event's reason), and what to do about it when something is missing. */
export interface PendingReason {
  /** The event's reason (`FailedBinding`, `ProvisioningFailed`…); undefined when the claim has no event yet. */
  reason?: string;
  /** What the claim waits for, in words (the controller's message, or a reading of it). */
  why: string;
  /** What would let it bind; undefined when it is only waiting for something on its way (a first consumer, a provisioner at work). */
  remedy?: string;
}

const when = (e: ClaimEvent) => Date.parse(e.lastTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp ?? "") || 0;

/**
 * Why `claim` is Pending, from its events (the newest says what the volume controller thinks now): no
 * volume and no class, a class that does not exist, a class with no provisioner and no volume that fits,
 * an external provisioner that does not answer, or a claim that binds with its first consumer.
 */
export function pendingReason(claim: ClaimView, events: ClaimEvent[]): PendingReason {
  // Stable: of two events in the same second, the later one in the list (the API's order) wins.
  const newest = events
    .map((e, i) => ({ e, i }))
    .sort((a, b) => when(a.e) - when(b.e) || a.i - b.i)
    .pop()?.e;
  const cls = claim.spec?.storageClassName || undefined;
  const fits = `${claim.spec?.resources?.requests?.storage ?? "its size"}, ${(claim.spec?.accessModes ?? []).join(", ") || "its access mode"}`;
  const name = (x: string | undefined) => (x ? `"${x}"` : "");
  if (!newest) return { why: "no event about it yet from the volume controller (is kube-controller-manager running?)" };
  const reason = newest.reason ?? "";
  const message = (newest.message ?? "").trim();
  switch (reason) {
    case "FailedBinding":
      if (/no storage class is set/.test(message)) {
        return {
          reason,
          why: message,
          remedy: `create a PersistentVolume with no class that fits it (${fits}), or set target.storageClass to a class with a provisioner`,
        };
      }
      return { reason, why: message, remedy: `see \`kubectl describe pvc\`: create a PersistentVolume that fits it (${fits}), or name a class with a provisioner (target.storageClass)` };
    case "ProvisioningFailed": {
      const missing = /storageclass\.storage\.k8s\.io "([^"]+)" not found/.exec(message)?.[1];
      if (missing) {
        return {
          reason,
          why: `StorageClass "${missing}" not found`,
          remedy: `the cluster has no StorageClass "${missing}": create it, with a provisioner or pre-made PersistentVolumes, or name one that exists (target.storageClass; \`kubectl get storageclass\`)`,
        };
      }
      const plugin = /no volume plugin matched name: (\S+)/.exec(message)?.[1];
      if (plugin) {
        return {
          reason,
          why: `StorageClass ${name(cls)} has no provisioner (${plugin}) and no PersistentVolume of that class is available for it`,
          remedy: `create PersistentVolumes of class ${name(cls)} that fit it (${fits}), run a provisioner for the class, or name a class that has one (target.storageClass)`,
        };
      }
      return { reason, why: `the provisioner of StorageClass ${name(cls)} failed: ${message}`, remedy: "see the provisioner's logs, or name another class (target.storageClass)" };
    }
    case "ExternalProvisioning": {
      const provisioner = /external provisioner '([^']+)'/.exec(message)?.[1];
      return {
        reason,
        why: `waiting for the external provisioner${provisioner ? ` ${provisioner}` : ""} of StorageClass ${name(cls)} to create a volume`,
        remedy: `check that ${provisioner ?? "the class's provisioner"} runs and is registered (its CSI driver's controller), or name a class whose provisioner runs (target.storageClass)`,
      };
    }
    case "WaitForFirstConsumer":
      return { reason, why: "it binds when the first pod that uses it is scheduled (the class's volumeBindingMode is WaitForFirstConsumer)" };
    case "WaitForPodScheduled":
      return { reason, why: `${message}; it binds once that pod is scheduled`, remedy: "see that pod's events (`kubectl describe pod`)" };
    case "Provisioning":
      return { reason, why: `the provisioner is creating its volume: ${message}` };
    default:
      return { reason: reason || undefined, why: message || "no message" };
  }
}

/** One line for people: the claim, that it is Pending, why, and the event's reason. */
export function pendingLine(namespace: string, claim: ClaimView, why: PendingReason): string {
  return `claim ${namespace}/${claim.metadata.name} is Pending: ${why.why}${why.reason ? ` (${why.reason})` : ""}`;
}

/** How long after a claim is first seen Pending it is worth a line: a few seconds, and never later than half of its bind timeout. */
export function pendingAfterMs(claimBindSeconds: number): number {
  return Math.min(5_000, (claimBindSeconds * 1000) / 2);
}

/**
 * Starts following the stack's claims in the target namespace (see the file's comment); undefined when
 * the settings or the kubeconfig cannot be read (the engine then says what is wrong). Each claim still
 * Pending {@link pendingAfterMs} after it was first seen is said once per reason; `stop()` answers with a
 * sentence for each claim still Pending, and what would let it bind.
 */
export function watchClaims(request: ApplyWatchRequest): ApplyWatch | undefined {
  const parsed = kubernetesTargetSchema.safeParse(request.config.target);
  if (!parsed.success) return undefined;
  // A kubeconfig kept as a secret is not in the plain config: another cluster than the provider's must not be watched.
  if (request.config["kubernetes:kubeconfig"] !== undefined && typeof request.config["kubernetes:kubeconfig"] !== "string") return undefined;
  let api: ReturnType<typeof kubeClient>;
  try {
    api = kubeClient(request.config);
  } catch {
    return undefined;
  }
  const { namespace, app } = parsed.data;
  const bindSeconds = parsed.data.claimBindSeconds ?? defaultClaimBindSeconds;
  const after = pendingAfterMs(bindSeconds);
  const aborted = new AbortController();
  const claims = new Map<string, any>();
  const events = new Map<string, ClaimEvent[]>();
  const firstPending = new Map<string, number>();
  const said = new Map<string, string>();
  const timers = new Map<string, NodeJS.Timeout>();

  const look = () => {
    if (aborted.signal.aborted) return;
    const now = Date.now();
    for (const [uid, claim] of claims) {
      if (claim.status?.phase !== "Pending") {
        firstPending.delete(uid);
        continue;
      }
      if (!firstPending.has(uid)) firstPending.set(uid, now);
      const due = firstPending.get(uid)! + after - now;
      if (due > 0) {
        // One timer per claim: it comes back when the claim has been Pending long enough to be worth a line.
        if (!timers.has(uid)) timers.set(uid, setTimeout(() => (timers.delete(uid), look()), due));
        continue;
      }
      const mine = events.get(uid) ?? [];
      if (!mine.length) continue;
      const line = pendingLine(namespace, claim, pendingReason(claim, mine));
      if (said.get(uid) === line) continue;
      said.set(uid, line);
      request.say(line);
    }
  };

  const day = 24 * 3600 * 1000;
  const follow = Promise.allSettled([
    api.watch(
      `the ${app} claims`,
      `/api/v1/namespaces/${namespace}/persistentvolumeclaims?labelSelector=${encodeURIComponent(`app=${app}`)}`,
      (items) => {
        claims.clear();
        for (const c of items) claims.set(c.metadata.uid, c);
        look();
        return undefined;
      },
      day,
      aborted.signal,
    ),
    api.watch(
      `the events of the ${namespace} claims`,
      `/api/v1/namespaces/${namespace}/events?fieldSelector=${encodeURIComponent("involvedObject.kind=PersistentVolumeClaim")}`,
      (items) => {
        events.clear();
        for (const e of items) {
          const uid = e.involvedObject?.uid;
          if (uid) events.set(uid, [...(events.get(uid) ?? []), e]);
        }
        look();
        return undefined;
      },
      day,
      aborted.signal,
    ),
  ]);

  let stopped: Promise<string[]> | undefined;
  return {
    stop: () =>
      (stopped ??= (async () => {
        aborted.abort();
        for (const t of timers.values()) clearTimeout(t);
        await follow;
        api.close();
        const now = Date.now();
        return [...claims.entries()]
          .filter(([, c]) => c.status?.phase === "Pending")
          .map(([uid, claim]) => {
            const why = pendingReason(claim, events.get(uid) ?? []);
            const seconds = Math.round((now - (firstPending.get(uid) ?? now)) / 1000);
            return (
              `${pendingLine(namespace, claim, why)}; still Pending after ${seconds} s (target.claimBindSeconds: ${bindSeconds})` +
              (why.remedy ? `. To let it bind: ${why.remedy}.` : ".")
            );
          });
      })()),
  };
}
