/**
 * Whether a rollback is a pure switch back to a warm slot, decided from the history alone (before the
 * engine is loaded): then traffic can move at once and the engine's update only records it. Pure.
 */
import { HistoryEntry, liveState } from "../records/history-record";
import { nextLayout, Slot } from "./rollout";
import { forwardOnly, Generations } from "./secret-generations";

/** The rollback's target, as the plan would apply it. */
export interface SwitchTarget {
  version: string;
  /** The version's plain (non-secret) config, as it ran. */
  config: Record<string, unknown>;
  /** The version's secret generations. */
  generations: Generations;
  /** The version's database schema, when it declares a database. */
  schema?: number;
}

/** Traffic moves first to `slot`, or the rollback goes through the engine first, and why. */
export type SwitchFirst = { kind: "switch"; slot: Slot; version: string } | { kind: "engine"; why: string };

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a ?? {}) === JSON.stringify(b ?? {});
const sortedKeys = (o: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));

/**
 * A switch first needs all of: the newest update succeeded (nothing failed or half-done since); the move is
 * a switch-back to the idle slot, which runs exactly the target as it ran (version and config); no secret
 * generation rises (the idle slot runs the current ones: every update brings it to them); the database
 * schema stays; and no approval is required. Anything else goes through the engine first, as a deploy does.
 */
export function switchFirstOf(history: HistoryEntry[], target: SwitchTarget, approvalsRequired: number): SwitchFirst {
  const newest = history[0];
  const live = liveState(history);
  if (!newest || newest.result !== "succeeded" || live.revision !== newest.revision) return { kind: "engine", why: "the newest update did not succeed" };
  if (!live.rollout) return { kind: "engine", why: "the stack has no blue/green layout" };
  const { layout, move } = nextLayout(live.rollout, { version: target.version, config: target.config }, "rollback");
  if (move !== "switch-back") return { kind: "engine", why: `${target.version} does not run on the idle slot` };
  const idle = live.rollout.slots[layout.active];
  if (!idle || !same(sortedKeys(idle.config), sortedKeys(target.config))) return { kind: "engine", why: `the idle slot runs ${target.version} with other settings` };
  const generations = forwardOnly(target.generations, live.secretGenerations, target.version).generations;
  if (!same(sortedKeys(generations), sortedKeys(live.secretGenerations ?? {}))) return { kind: "engine", why: "a secret's generation changes" };
  if ((target.schema ?? live.database?.schema) !== live.database?.schema || live.database?.restore) return { kind: "engine", why: "the database changes" };
  if (approvalsRequired > 0) return { kind: "engine", why: "the rollback needs approval first" };
  return { kind: "switch", slot: layout.active, version: target.version };
}
