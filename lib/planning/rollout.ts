/**
 * Blue/green as data. stackpin decides which release runs in which slot and which slot takes traffic;
 * a program that supports blue/green (it reads the `stackpin:rollout` config) makes it so. The rules:
 * a deploy puts the target on the idle slot and switches to it, keeping the previous release running
 * idle for an instant rollback; a rollback to the release on the idle slot only switches back, then
 * drains the slot it left; a release that runs nowhere is started on the idle slot first.
 */

/** The two slots. */
export type Slot = "blue" | "green";

/** What runs in one slot: a version and its (non-secret) config. */
export interface SlotRelease {
  version: string;
  config: Record<string, unknown>;
}

/** Which release each slot runs and which slot takes traffic. */
export interface RolloutLayout {
  active: Slot;
  slots: Partial<Record<Slot, SlotRelease>>;
}

/** How a layout change reaches the target release, in words for the preview. */
export type RolloutMove = "first-start" | "reapply" | "switch-back" | "start-idle-and-switch";

/** The other slot. */
export function idleOf(slot: Slot): Slot {
  return slot === "blue" ? "green" : "blue";
}

/** The layout after applying `target` with `op` on top of `current` (undefined for a new stack). */
export function nextLayout(
  current: RolloutLayout | undefined,
  target: SlotRelease,
  op: "deploy" | "rollback",
): { layout: RolloutLayout; move: RolloutMove } {
  if (!current || !current.slots[current.active]) {
    return { layout: { active: "blue", slots: { blue: target } }, move: "first-start" };
  }
  const active = current.active;
  const idle = idleOf(active);
  if (current.slots[active]?.version === target.version) {
    // Re-applying the live version converges the live slot and, on a rollback, drains the idle one.
    const slots = op === "rollback" ? { [active]: target } : { ...current.slots, [active]: target };
    return { layout: { active, slots }, move: "reapply" };
  }
  if (current.slots[idle]?.version === target.version) {
    const slots = op === "rollback" ? { [idle]: target } : { [idle]: target, [active]: current.slots[active] };
    return { layout: { active: idle, slots }, move: "switch-back" };
  }
  return {
    layout: { active: idle, slots: { [idle]: target, [active]: current.slots[active] } },
    move: "start-idle-and-switch",
  };
}

/**
 * One sentence for the preview. `rising` names the secrets whose generation the apply raises (`apiKey
 * generation 2`): the slots move to them, so a switch-back is then not a pure switch.
 */
export function describeMove(move: RolloutMove, before: RolloutLayout | undefined, after: RolloutLayout, rising: string[] = []): string {
  const to = after.slots[after.active]?.version;
  const secrets = rising.length ? ` moves to the current secrets (${rising.join(", ")})` : "";
  switch (move) {
    case "first-start":
      return `${to} starts on the ${after.active} slot, which takes the traffic`;
    case "reapply":
      return `${to} stays on the ${after.active} slot${secrets ? `, which${secrets} in place, never below its ready count` : ""}${
        before?.slots[idleOf(after.active)] && !after.slots[idleOf(after.active)] ? `; the ${idleOf(after.active)} slot is drained and stopped` : ""
      }`;
    case "switch-back":
      return `traffic switches back to the ${after.active} slot, which ${secrets ? `runs ${to} but first${secrets}: a redeploy, not a pure switch` : `still runs ${to} (no redeploy)`}${
        after.slots[idleOf(after.active)] ? "" : `; then the ${idleOf(after.active)} slot is drained and stopped`
      }`;
    case "start-idle-and-switch":
      return `${to} starts on the idle ${after.active} slot, is health-checked, then takes the traffic; ${
        after.slots[idleOf(after.active)]?.version ?? "nothing"
      } stays running on the ${idleOf(after.active)} slot for an instant rollback`;
  }
}
