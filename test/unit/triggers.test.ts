import { strict as assert } from "node:assert";
import { TriggerEvaluator } from "../../lib/incident/triggers";
import { fakePrometheus } from "../e2e/fake-prometheus";

// Rule evaluation alone, against the fake query server (the real Prometheus is the incident suite's).
describe("trigger rules: bounds, baselines, windows and unreadable signals", () => {
  let prom: Awaited<ReturnType<typeof fakePrometheus>>;
  const values: Record<string, number> = {};
  before(async () => (prom = await fakePrometheus(values)));
  after(async () => prom.close());
  const sources = () => ({ prometheus: prom.url, healthPath: "/health", timeoutMs: 2000, baselines: { p99: 0.1 } });

  it("an absolute bound breaches above it and fires at once without a window", async () => {
    const e = new TriggerEvaluator([{ name: "errors", query: "errors", above: 0.05, forMs: 0 }], sources());
    values.errors = 0.05;
    assert.deepEqual((await e.evaluate(1000)).rules.map((r) => [r.breached, r.fired, r.detail]), [[false, false, "0.05 <= 0.05"]]);
    values.errors = 0.09;
    const fired = await e.evaluate(2000);
    assert.equal(fired.fired?.name, "errors");
    assert.equal(fired.rules[0].breachedAt, new Date(2000).toISOString());
  });

  it("a baseline bound uses the recorded baseline, and a window must hold before it fires", async () => {
    const e = new TriggerEvaluator([{ name: "p99", query: "p99", aboveBaseline: 2, forMs: 5000 }], sources());
    values.p99 = 0.25;
    let r = (await e.evaluate(10_000)).rules[0];
    assert.deepEqual([r.breached, r.fired, r.threshold], [true, false, 0.2]);
    r = (await e.evaluate(14_999)).rules[0];
    assert.equal(r.fired, false);
    r = (await e.evaluate(15_000)).rules[0];
    assert.equal(r.fired, true);
    assert.match(r.detail, /^0.25 > 2x baseline 0.1 for 5 s of 5 s$/);
    values.p99 = 0.1;
    r = (await e.evaluate(16_000)).rules[0];
    assert.deepEqual([r.breached, r.breachedAt], [false, undefined], "a recovery resets the window");
  });

  it("no data and an unreachable server are reported, never a breach", async () => {
    const e = new TriggerEvaluator([{ name: "absent", query: "absent", above: 0, forMs: 0 }], sources());
    assert.deepEqual((await e.evaluate()).rules.map((r) => [r.breached, r.detail]), [[false, "no data"]]);
    const down = new TriggerEvaluator([{ name: "x", query: "x", above: 0, forMs: 0 }], { ...sources(), prometheus: "http://127.0.0.1:9" });
    const r = (await down.evaluate()).rules[0];
    assert.equal(r.breached, false);
    assert.match(r.detail, /^signal unavailable: /);
  });
});
