import { strict as assert } from "node:assert";
import type { HistoryEntry } from "../../lib/records/history-record";
import type { IncidentRecord } from "../../lib/incident/incident";
import { incidentChartSpec, renderSvg } from "../../lib/incident/incident-page";
import { incidentMarks } from "../../lib/operations/incident";

const record: IncidentRecord = {
  id: "20261126T021953Z-dev-v1",
  stack: "dev",
  from: "v2",
  to: "v1",
  actor: "e2e",
  trigger: { rule: "error rate above 5%", detail: "0.13 > 0.05", breachedAt: "2026-11-26T02:19:53.100Z", firedAt: "2026-11-26T02:19:53.100Z" },
  startedAt: "2026-11-26T02:19:53.200Z",
  endedAt: "2026-11-26T02:20:14.500Z",
  approvals: [],
  notifications: [],
  verification: { passed: true, checks: [] } as never,
  timeline: [
    { at: "2026-11-26T02:19:53.100Z", step: "threshold breached" },
    { at: "2026-11-26T02:19:53.100Z", step: "trigger fired" },
    { at: "2026-11-26T02:19:53.200Z", step: "rollback requested" },
    { at: "2026-11-26T02:20:12.000Z", step: "apply finished" },
    { at: "2026-11-26T02:20:14.400Z", step: "verification passed" },
    { at: "2026-11-26T02:20:20.200Z", step: "signals recovered" },
  ],
};
const history = [
  { revision: 3, op: "rollback", to: "v1", result: "succeeded", startedAt: "2026-11-26T02:19:54.000Z", resourceChanges: {} },
  { revision: 2, op: "deploy", to: "v2", result: "succeeded", startedAt: "2026-11-26T02:19:35.000Z", resourceChanges: {} },
  { revision: 1, op: "deploy", to: "v1", result: "succeeded", startedAt: "2026-11-26T02:18:00.000Z", resourceChanges: {} },
] as HistoryEntry[];

describe("the incident page's chart: marks from the record and history, one panel per signal", () => {
  it("marks the deploy that made the release live, the breach, trigger, rollback, verification and recovery, in time order", () => {
    assert.deepEqual(
      incidentMarks(record, history).map((m) => `${m.at.slice(11, 23)} ${m.label}`),
      [
        "02:19:35.000 deploy v2",
        "02:19:53.100 breach",
        "02:19:53.100 trigger",
        "02:19:53.200 rollback start",
        "02:20:12.000 rollback end",
        "02:20:14.400 verification passed",
        "02:20:20.200 recovered",
      ],
    );
  });

  it("marks a way back that broke or came back while the watch ran, from the record's timeline", () => {
    const seen = {
      ...record,
      timeline: [
        { at: "2026-11-26T02:10:00.000Z", step: "way back to v1 broke", detail: "database: WAL segment 000000010000000000000007 is in no WAL archive" },
        { at: "2026-11-26T02:15:00.000Z", step: "way back to v1 restored", detail: "rollback to v1: ready" },
        ...record.timeline,
      ],
    };
    assert.deepEqual(
      incidentMarks(seen, history).slice(0, 3).map((m) => `${m.at.slice(11, 23)} ${m.label}`),
      ["02:10:00.000 way back to v1 broke", "02:15:00.000 way back to v1 restored", "02:19:35.000 deploy v2"],
    );
  });

  it("marks the wait and the withheld rollback of a trigger a guard left to a person, and no rollback", () => {
    const withheld: IncidentRecord = {
      ...record,
      verification: undefined,
      endedAt: "2026-11-26T02:19:58.000Z",
      withheld: { guard: "rollback-limit", reason: "1 automatic rollback(s) in the last 60 min" },
      timeline: [
        { at: "2026-11-26T02:19:53.100Z", step: "threshold breached" },
        { at: "2026-11-26T02:19:53.100Z", step: "trigger fired" },
        { at: "2026-11-26T02:19:53.300Z", step: "automatic rollback deferred" },
        { at: "2026-11-26T02:19:58.000Z", step: "automatic rollback withheld" },
      ],
    };
    assert.deepEqual(
      incidentMarks(withheld, history.slice(1)).map((m) => `${m.at.slice(11, 23)} ${m.label}`),
      ["02:19:35.000 deploy v2", "02:19:53.100 breach", "02:19:53.100 trigger", "02:19:53.300 rollback deferred", "02:19:58.000 rollback withheld"],
    );
  });

  it("draws each series with its threshold and every mark, and renders to SVG in Node", async () => {
    const points = Array.from({ length: 30 }, (_, i) => ({ at: new Date(Date.parse("2026-11-26T02:19:30Z") + i * 2000).toISOString(), value: i > 10 && i < 22 ? 0.14 : 0 }));
    const marks = incidentMarks(record, history);
    const spec = incidentChartSpec(record, [{ rule: "error rate above 5%", query: "q", threshold: 0.05, points }, { rule: "p99 over 2x baseline", query: "p", points: [], missing: "no samples" }], marks) as any;
    assert.equal(spec.vconcat.length, 2);
    assert.deepEqual(spec.vconcat[0].layer.map((l: any) => l.name), ["series_0", "threshold_0", "timeline_0"]);
    assert.deepEqual(spec.vconcat[1].layer.map((l: any) => l.name), ["series_1", "timeline_1"], "no threshold known: none drawn");
    assert.match(spec.vconcat[1].title.text, /no data: no samples/);
    const svg = await renderSvg(spec);
    for (const label of ["deploy v2", "breach", "trigger", "rollback start", "rollback end", "verification passed", "recovered", "threshold 0.05"]) {
      assert.ok(svg.includes(`>${label}</text>`), `the SVG lacks ${label}`);
    }
    assert.match(svg, /class="mark-line role-mark series_0_marks"/);
  });
});
