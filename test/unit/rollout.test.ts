import { strict as assert } from "node:assert";
import { describeMove, nextLayout, RolloutLayout } from "../../lib/planning/rollout";
import { risingGenerations } from "../../lib/planning/desired-state";
import { forwardOnly } from "../../lib/planning/secret-generations";

const rel = (version: string) => ({ version, config: { artifact: `app-${version}` } });

describe("blue/green layout", () => {
  it("starts the first release on blue", () => {
    assert.deepEqual(nextLayout(undefined, rel("v1"), "deploy"), {
      layout: { active: "blue", slots: { blue: rel("v1") } },
      move: "first-start",
    });
  });

  it("deploys to the idle slot and keeps the previous release running there", () => {
    const live: RolloutLayout = { active: "blue", slots: { blue: rel("v1") } };
    assert.deepEqual(nextLayout(live, rel("v2"), "deploy"), {
      layout: { active: "green", slots: { green: rel("v2"), blue: rel("v1") } },
      move: "start-idle-and-switch",
    });
  });

  it("rolls back to the idle slot's release by switching, and drains the slot it leaves", () => {
    const live: RolloutLayout = { active: "green", slots: { green: rel("v2"), blue: rel("v1") } };
    assert.deepEqual(nextLayout(live, rel("v1"), "rollback"), {
      layout: { active: "blue", slots: { blue: rel("v1") } },
      move: "switch-back",
    });
  });

  it("redeploys a release that runs nowhere on the idle slot", () => {
    const live: RolloutLayout = { active: "blue", slots: { blue: rel("v3") } };
    assert.deepEqual(nextLayout(live, rel("v1"), "rollback"), {
      layout: { active: "green", slots: { green: rel("v1"), blue: rel("v3") } },
      move: "start-idle-and-switch",
    });
  });

  it("re-applying the live release leaves traffic where it is", () => {
    const live: RolloutLayout = { active: "green", slots: { green: rel("v2"), blue: rel("v1") } };
    assert.equal(nextLayout(live, rel("v2"), "deploy").layout.active, "green");
    assert.deepEqual(nextLayout(live, rel("v2"), "rollback").layout.slots, { green: rel("v2") });
  });

  it("says a switch-back is no redeploy only when no secret generation rises", () => {
    const live: RolloutLayout = { active: "green", slots: { green: rel("v2"), blue: rel("v1") } };
    const { layout, move } = nextLayout(live, rel("v1"), "rollback");
    assert.match(describeMove(move, live, layout, risingGenerations({ apiKey: 2 }, { apiKey: 2 })), /still runs v1 \(no redeploy\)/);
    const rising = risingGenerations({ apiKey: 3, signing: 1 }, { apiKey: 2, signing: 1 });
    assert.deepEqual(rising, ["apiKey generation 3"]);
    const said = describeMove(move, live, layout, rising);
    assert.doesNotMatch(said, /no redeploy/);
    assert.match(said, /runs v1 but first moves to the current secrets \(apiKey generation 3\): a redeploy, not a pure switch/);
  });

  it("says a re-apply moves the live slot to a rising generation in place", () => {
    const live: RolloutLayout = { active: "blue", slots: { blue: rel("v1") } };
    const { layout, move } = nextLayout(live, rel("v1"), "rollback");
    assert.equal(describeMove(move, live, layout, ["apiKey generation 2"]), "v1 stays on the blue slot, which moves to the current secrets (apiKey generation 2) in place, never below its ready count");
  });
});

describe("forward-only secret generations", () => {
  it("keeps the live generation when the target pins an older one, and says so", () => {
    const plan = forwardOnly({ apiKey: 1 }, { apiKey: 3 }, "v41");
    assert.deepEqual(plan.generations, { apiKey: 3 });
    assert.deepEqual(plan.notes, [
      "secret apiKey: v41 pins generation 1, but generation 3 is live; the current secret is kept (secrets never roll back)",
    ]);
  });

  it("rotates when the target pins a newer one", () => {
    assert.deepEqual(forwardOnly({ apiKey: 4 }, { apiKey: 3 }, "v42").generations, { apiKey: 4 });
  });

  it("keeps a live secret the target no longer declares", () => {
    assert.deepEqual(forwardOnly({}, { apiKey: 2 }, "v40").generations, { apiKey: 2 });
  });

  it("generates the first generation of a new secret", () => {
    const plan = forwardOnly({ dbPassword: 1 }, undefined, "v1");
    assert.deepEqual(plan.generations, { dbPassword: 1 });
    assert.match(plan.notes[0], /generation 1 is generated/);
  });
});
