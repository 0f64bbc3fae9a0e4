import { strict as assert } from "node:assert";
import { notReady, selectorManager } from "../../programs/kubernetes/switch";

const deployment = (status: Record<string, number>, fields: { replicas?: number; version?: string; generation?: number } = {}) => ({
  metadata: { name: "shop-blue", generation: fields.generation ?? 2 },
  spec: { replicas: fields.replicas ?? 3, template: { metadata: { labels: { version: fields.version ?? "v41" } } } },
  status: { observedGeneration: 2, replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3, ...status },
});

describe("whether a colour may take traffic before the engine runs", () => {
  it("takes it when every replica runs the version, updated, ready and available", () => {
    assert.equal(notReady(deployment({}), "v41"), undefined);
  });

  it("refuses another version, a spec not yet rolled out, a rolling colour, and missing ready pods, saying which", () => {
    assert.match(notReady(deployment({}, { version: "v42" }), "v41")!, /runs v42, not v41/);
    assert.match(notReady(deployment({}, { generation: 3 }), "v41")!, /newest spec is not rolled out/);
    assert.match(notReady(deployment({ updatedReplicas: 2 }), "v41")!, /rolling \(2 of 3 updated\)/);
    assert.match(notReady(deployment({ replicas: 4 }), "v41")!, /rolling/);
    assert.match(notReady(deployment({ readyReplicas: 2 }), "v41")!, /2 of 3 pods ready/);
    assert.match(notReady(deployment({ availableReplicas: 1 }), "v41")!, /pods ready/);
  });
});

describe("the field manager a Service's selector is written under", () => {
  const entry = (manager: string, operation: string, selector: boolean) => ({ manager, operation, fieldsV1: { "f:spec": selector ? { "f:selector": {} } : { "f:ports": {} } } });

  it("is the one that applied the selector (the provider's), before any that only updated it", () => {
    const service = { metadata: { managedFields: [entry("kubectl-edit", "Update", true), entry("pulumi-kubernetes-1a2b", "Apply", true), entry("other", "Apply", false)] } };
    assert.equal(selectorManager(service), "pulumi-kubernetes-1a2b");
  });

  it("falls back to whoever wrote the selector, and is undefined when nobody did", () => {
    assert.equal(selectorManager({ metadata: { managedFields: [entry("kubectl-edit", "Update", true)] } }), "kubectl-edit");
    assert.equal(selectorManager({ metadata: {} }), undefined);
  });
});
