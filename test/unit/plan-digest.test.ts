import { strict as assert } from "node:assert";
import { planDatabase, VersionDatabase } from "../../lib/planning/database";
import { planDigest, planDigestDocument, PlanDigestInput } from "../../lib/policy/plan-digest";
import { nextLayout } from "../../lib/planning/rollout";

const layout = nextLayout({ active: "blue", slots: { blue: { version: "v1", config: { artifact: "hello-1.0.0" } } } }, { version: "v2", config: { artifact: "hello-2.0.0" } }, "deploy").layout;

function input(overrides: Partial<PlanDigestInput> = {}, config: Record<string, unknown> = {}): PlanDigestInput {
  return {
    stack: "prod",
    op: "rollback",
    from: "v2",
    to: "v1",
    baseRevision: 7,
    config: {
      "shop:message": "hello",
      "shop:replicas": 3,
      "shop:apiToken": { secure: "v1:GB8iCIPHERTEXT" },
      "stackpin:version": "v1",
      "stackpin:rollout": JSON.stringify(layout),
      "stackpin:secrets": JSON.stringify({ apiKey: 2 }),
      ...config,
    } as PlanDigestInput["config"],
    ...overrides,
  };
}

const versions: VersionDatabase[] = [
  { version: "v1", spec: { schema: 1, migration: { name: "001_init", up: "u1" }, backwardCompatible: true }, up: "create table t (id int);" },
  { version: "v2", spec: { schema: 2, migration: { name: "002_drop", up: "u2" }, backwardCompatible: false }, up: "alter table t drop column id;" },
];
const live = { plan: { schema: 2, migrations: [], downs: [], snapshots: [{ name: "pre-v2", version: "v2", source: "primary" }], restores: [], live: "primary", policy: "migrate" as const }, snapshotTimes: { "pre-v2": "2026-11-24T05:30:00.000Z" } };
const restoreAt = (now: string) =>
  planDatabase("prod", "rollback", versions[0], versions, live, { approveDataLoss: true, now: new Date(now) });

describe("plan digest", () => {
  it("is the same for the same plan, whatever the order of keys in the config or in stackpin's JSON values", () => {
    const a = input();
    const shuffledLayout = JSON.stringify({ slots: Object.fromEntries(Object.entries(layout.slots).reverse()), active: layout.active });
    const b = input({}, { "stackpin:rollout": shuffledLayout });
    b.config = Object.fromEntries(Object.entries(b.config).reverse());
    assert.match(planDigest(a), /^sha256:[0-9a-f]{64}$/);
    assert.equal(planDigest(a), planDigest(input()));
    assert.equal(planDigest(a), planDigest(b));
  });

  it("changes when anything applied changes: a value, the target, the operation, the live version or the base revision", () => {
    const base = planDigest(input());
    const variants = [
      input({}, { "shop:replicas": 4 }),
      input({}, { "shop:extra": "x" }),
      input({}, { "stackpin:secrets": JSON.stringify({ apiKey: 3 }) }),
      input({ to: "v0" }),
      input({ op: "deploy" }),
      input({ from: "v3" }),
      input({ from: undefined }),
      input({ stack: "staging" }),
      input({ baseRevision: 8 }),
    ];
    const digests = variants.map(planDigest);
    for (const d of digests) assert.notEqual(d, base);
    assert.equal(new Set(digests).size, digests.length, "each change gives its own digest");
  });

  it("covers a secret's ciphertext by its hash only", () => {
    const doc = planDigestDocument(input());
    assert.doesNotMatch(doc, /GB8iCIPHERTEXT/);
    assert.match(doc, /"shop:apiToken":\{"secureSha256":"[0-9a-f]{64}"\}/);
    assert.notEqual(planDigest(input({}, { "shop:apiToken": { secure: "v1:OTHERCIPHERTEXT" } })), planDigest(input()));
  });

  it("does not change with the clock: a restore planned an hour later has the same digest, a different restore point does not", () => {
    const early = restoreAt("2026-11-25T10:00:00Z");
    const late = restoreAt("2026-11-25T11:00:00Z");
    assert.notDeepEqual(early.dataLossWindow, late.dataLossWindow, "the data-loss window ends now");
    const digestOf = (plan: object) => planDigest(input({}, { "stackpin:database": JSON.stringify(plan) }));
    assert.equal(digestOf(early.plan), digestOf(late.plan));
    const otherPoint = { ...early.plan, restore: { snapshot: "pre-v2", time: "2026-11-24T05:31:00.000Z" } };
    assert.notEqual(digestOf(otherPoint), digestOf(early.plan));
  });
});
