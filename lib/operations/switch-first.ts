import type { EnvironmentContext, ProgressOptions } from "../environment";
import { underBriefMark } from "../engine/brief-mark";
import type { StackReader } from "../engine/stack-reader";
import { approvalPolicyOf, approvalsNeeded } from "../policy/approvals";
import type { HistoryEntry } from "../records/history-record";
import type { StackRecords } from "../records/ledger";
import { switchFirstOf } from "../planning/switch-first";
import { generationsOf, plainConfig } from "../planning/desired-state";
import { resolveRollbackTarget } from "./resolve";

/** Traffic moved before the engine ran: where, and when (ms after the command started). */
export interface TrafficMoved {
  slot: "blue" | "green";
  version: string;
  /** From the command's start to the switch being written. */
  movedMs: number;
  /** From the command's start to every ready endpoint being on the slot; absent when not seen in time. */
  settledMs?: number;
  /** What was written and seen, for people. */
  detail: string;
}

/**
 * Traffic first: when a rollback (applied without a question: `--yes`) only moves traffic back to the idle
 * slot, which runs the target as it ran with the current secrets (see `switchFirstOf`), the program's
 * switch checks that slot is ready and healthy and moves traffic to it at once, under a brief in-flight
 * mark; the engine's update that follows records it. Undefined when traffic did not move: the rollback
 * then goes through the engine first, as before, and a progress line says why.
 */
export async function moveTrafficFirst(
  ctx: EnvironmentContext,
  reader: StackReader,
  seen: { history: HistoryEntry[]; records: StackRecords },
  to: string,
  startedAt: number,
  options: ProgressOptions,
): Promise<TrafficMoved | undefined> {
  const move = ctx.program.switchTraffic;
  if (!move) return undefined;
  const ran = resolveRollbackTarget(ctx, to, seen.history).version;
  const decision = switchFirstOf(
    seen.history,
    {
      version: ran.version,
      config: plainConfig(ran),
      generations: generationsOf(ran),
      schema: ran.database?.schema,
    },
    approvalsNeeded(approvalPolicyOf(ctx), "rollback").length,
  );
  if (decision.kind === "engine") {
    options.onProgress?.({ type: "phase", phase: "switch", message: `not a pure switch (${decision.why}): the engine goes first` });
    return undefined;
  }
  const recorded = seen.records.live?.updateId === seen.history[0]?.updateId ? seen.records.live?.outputs : undefined;
  const outputs = Object.fromEntries(Object.entries(recorded ?? (await reader.outputs())).map(([k, o]) => [k, o.value]));
  const what = `stackpin rollback of ${ctx.stack.name} to ${ran.version}: traffic to the ${decision.slot} slot`;
  const held = await underBriefMark(reader, what, ctx.stack.settings.lease.ttlSeconds * 1000, () =>
    move({
      context: { stackName: ctx.stack.name, stateDir: ctx.stateDir },
      config: { ...ctx.stack.settings.config, ...ran.config },
      outputs,
      slot: decision.slot,
      version: ran.version,
      health: ran.verify.health,
    }),
  );
  if (!held) {
    options.onProgress?.({ type: "phase", phase: "switch", message: "another operation holds the stack: the engine goes first" });
    return undefined;
  }
  const outcome = held.value;
  if (!outcome.moved) {
    options.onProgress?.({ type: "phase", phase: "switch", message: `traffic not moved first (${outcome.reason}): the engine goes first` });
    return undefined;
  }
  const moved: TrafficMoved = {
    slot: decision.slot,
    version: ran.version,
    movedMs: outcome.movedAt - startedAt,
    ...(outcome.settledAt ? { settledMs: outcome.settledAt - startedAt } : {}),
    detail: outcome.detail,
  };
  options.onProgress?.({
    type: "phase",
    phase: "switch",
    message: `traffic moved to the ${moved.slot} slot (${moved.version}) at +${(moved.movedMs / 1000).toFixed(2)} s${moved.settledMs !== undefined ? `, settled at +${(moved.settledMs / 1000).toFixed(2)} s` : ""}: ${moved.detail}; the engine records it next`,
  });
  return moved;
}
