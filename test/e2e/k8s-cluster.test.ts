import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import { K8sCluster, k8sToolsOrSkip, startCluster } from "./k8s-cluster";

describe("the test control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)", function () {
  let cluster: K8sCluster | undefined;

  before(async function () {
    k8sToolsOrSkip(this, { provider: false });
    cluster = await startCluster();
  });

  it("runs a Deployment to Available on the fake node, with its pods' IPs as ready endpoints", async () => {
    const { api, until } = cluster!;
    const started = Date.now();
    const labels = { app: "probe" };
    await api.create("/apis/apps/v1/namespaces/default/deployments", {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "probe" },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: { metadata: { labels }, spec: { containers: [{ name: "app", image: "example.invalid/probe:1", readinessProbe: { httpGet: { path: "/", port: 80 } } }] } },
      },
    });
    await api.create("/api/v1/namespaces/default/services", { apiVersion: "v1", kind: "Service", metadata: { name: "probe" }, spec: { selector: labels, ports: [{ port: 80 }] } });
    await until("the Deployment Available", async () => (await api.get("/apis/apps/v1/namespaces/default/deployments/probe")).status?.availableReplicas === 2);
    const available = (Date.now() - started) / 1000;
    const ready = await until("2 ready endpoints", async () => {
      const slices = await api.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dprobe");
      const n = slices.items.flatMap((s: any) => s.endpoints ?? []).filter((e: any) => e.conditions?.ready).length;
      return n === 2 ? n : undefined;
    });
    assert.equal(ready, 2);
    process.stderr.write(`      [k8s] a 2-replica Deployment Available in ${available.toFixed(2)} s\n`);
  });

  it("a pod whose image tag is never-ready runs but never becomes Ready (readiness that fails on purpose)", async () => {
    const { api, until } = cluster!;
    await api.create("/api/v1/namespaces/default/pods", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "broken", labels: { app: "probe" } },
      spec: { containers: [{ name: "app", image: "example.invalid/probe:never-ready" }] },
    });
    const pod = await until("the never-ready pod Running", async () => {
      const p = await api.get("/api/v1/namespaces/default/pods/broken");
      return p.status?.phase === "Running" ? p : undefined;
    });
    assert.equal(pod.status.conditions.find((c: any) => c.type === "Ready").status, "False");
    // Behind the same Service as the 2 ready pods, it shows up as an endpoint that is not ready.
    await until("the never-ready pod as a not-ready endpoint", async () => {
      const slices = await api.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dprobe");
      const eps = slices.items.flatMap((s: any) => s.endpoints ?? []);
      return eps.length === 3 && eps.filter((e: any) => e.conditions?.ready).length === 2;
    });
  });

  it("stops with no process, port or file left", async () => {
    const dir = require("node:path").dirname(cluster!.kubeconfig);
    await cluster!.stop();
    cluster = undefined;
    assert.equal(fs.existsSync(dir), false);
  });

  after(async () => cluster?.stop());
});
