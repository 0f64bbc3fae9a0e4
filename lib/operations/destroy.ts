import type { EnvironmentContext, ProgressOptions } from "../environment";
import { progressBridge } from "../environment";
import type { StackOutput, StateResource } from "../engine/stack";
import { ApplyFailedError, DataLossApprovalRequiredError, EngineFailedError, engineErrorLines, FrozenError, NotConfirmedError } from "../errors";
import { encodeRecord } from "../records/history-record";
import { recordStoreOf } from "../records/ledger";
import { DataResource, dataOnDestroy } from "../planning/data-resources";
import { audit, auditFailure } from "../records/trail";
import { readHistoryAndTags, unchangedSince } from "./apply";
import { recoverInterrupted } from "./recover";

/** Options for {@link destroy}. */
export interface DestroyOptions extends ProgressOptions {
  /** Must be true: destroying stops the service and removes everything the stack owns. */
  yes: boolean;
  /**
   * Required when the stack holds data (volumes, databases, snapshots, restores, WAL archives): destroy
   * deletes them, or leaves the retained ones behind, no longer managed by the stack.
   */
  approveDataLoss?: boolean;
  reason?: string;
}

/** What {@link destroy} did. */
export interface DestroyResult {
  stack: string;
  durationMs: number;
  /** Every data-holding resource the stack held, and what the destroy did to it (deleted, or left in place). */
  data: DataResource[];
}

/**
 * The data a destroy of `resources` touches, decided from the checkpoint: every data-holding resource
 * with its fate (`retainOnDelete` as recorded in the state, which is what the destroy uses). A program
 * of one's own may hold data in resources of types not classified here and declare it in its outputs
 * (`databaseSnapshots`, `databaseInstances` with a `source`): those count as deleted, named from the
 * outputs, with the stack itself as their resource and no `where`.
 */
export function destroyData(resources: readonly StateResource[], outputs: Record<string, StackOutput>): DataResource[] {
  const data = dataOnDestroy(resources);
  const known = new Set(data.map((d) => d.urn.split("::").pop()));
  const root = resources.find((r) => r.type === "pulumi:pulumi:Stack");
  const declared = (kind: "database" | "snapshot", label: string): DataResource => ({ urn: root?.urn ?? "", type: root?.type ?? "", kind, label, where: "", fate: "deleted" });
  const snapshots = Object.keys((outputs.databaseSnapshots?.value ?? {}) as Record<string, unknown>).filter((n) => !known.has(`snapshot-${n}`));
  const instances = (outputs.databaseInstances?.value ?? {}) as Record<string, { source?: string }>;
  const restores = Object.entries(instances).filter(([n, i]) => i.source && !known.has(n)).map(([n]) => n);
  return [
    ...data,
    ...restores.sort().map((n) => declared("database", `restored database ${n}`)),
    ...snapshots.sort().map((n) => declared("snapshot", `snapshot ${n}`)),
  ];
}

/** What destroying does to `data`, in words: `deletes A, B; leaves C in the cluster (retained on delete: ...)`. */
export function describeDestroyData(data: readonly DataResource[]): string {
  const labels = (fate: DataResource["fate"], where?: string) => data.filter((d) => d.fate === fate && (where === undefined || d.where === where)).map((d) => d.label);
  const parts: string[] = [];
  if (labels("deleted").length) parts.push(`deletes ${labels("deleted").join(", ")}`);
  for (const where of [...new Set(data.filter((d) => d.fate === "retained").map((d) => d.where))]) {
    const kept = labels("retained", where);
    parts.push(`leaves ${kept.join(", ")} in ${where} (retained on delete: ${kept.length > 1 ? "they keep their" : "it keeps its"} data and the stack no longer manages ${kept.length > 1 ? "them" : "it"})`);
  }
  if (labels("protected").length) parts.push(`cannot delete ${labels("protected").join(", ")} (protected: the destroy fails there)`);
  return parts.join("; ");
}

/**
 * Removes every resource the stack owns (processes, files, cloud resources), restored databases
 * included; data-holding resources kept on delete are left where they are, outside the stack. Guarded as
 * every apply is: refused while the stack is frozen ({@link FrozenError}); when the stack holds any
 * data-holding resource it refuses, changing nothing and naming each one with what the destroy would do
 * to it, unless `approveDataLoss` is given; and it is refused (`StalePlanError`, exit 7) when another
 * operation lands between that decision and the destroy. The stack and its history stay in the backend;
 * the next deploy starts it again.
 */
export async function destroy(ctx: EnvironmentContext, options: DestroyOptions): Promise<DestroyResult> {
  if (!options.yes) throw new NotConfirmedError(ctx.stack.name, "destroy");
  const started = Date.now();
  const engine = await ctx.openEngine({ create: false });
  try {
    await recoverInterrupted(ctx, engine, options);
    const { history, records } = await readHistoryAndTags(engine);
    const { resources } = await engine.checkpoint({ reuse: true });
    const data = destroyData(resources, await engine.outputs({ reuse: true }));
    const refusal = records.freeze
      ? new FrozenError(ctx.stack.name, records.freeze.reason, records.freeze.by, records.freeze.at, "destroys of")
      : data.length && !options.approveDataLoss
        ? new DataLossApprovalRequiredError(ctx.stack.name, `destroying ${describeDestroyData(data)}`)
        : undefined;
    if (refusal) {
      await auditFailure(ctx, engine, { op: "destroy" }, refusal, options);
      throw refusal;
    }
    const what = data.length ? `: it ${describeDestroyData(data)}` : "";
    options.onProgress?.({ type: "phase", phase: "apply", message: `destroying everything stack ${ctx.stack.name} owns${what}` });
    const message = encodeRecord({ op: "destroy", to: "(nothing)", who: ctx.actor, reason: options.reason });
    try {
      // What was approved (the data above) was read from the stack as it is at the newest update: checked
      // again once the in-flight mark is held, so another operation landing in between refuses the destroy.
      await engine.destroy(message, progressBridge(options), { beforeUpdate: unchangedSince(ctx, engine, history, "destroy") });
    } catch (caught) {
      // The destroy ran and stopped part-way: not a refusal, and not "nothing applied".
      const err = caught instanceof EngineFailedError
        ? new ApplyFailedError(ctx.stack.name, "(destroy)", engineErrorLines(caught.detail), { cause: caught.cause, what: `destroying stack ${ctx.stack.name} failed` })
        : caught;
      await auditFailure(ctx, engine, { op: "destroy" }, err, options);
      throw err;
    }
    await recordStoreOf(engine).update((r) => {
      r.live = { version: "(destroyed)", appliedBy: ctx.actor.slice(0, 256), verifiedVersion: r.live?.verifiedVersion, at: new Date().toISOString() };
    });
    await audit(ctx, engine, { op: "destroy", result: "succeeded", detail: options.reason }, options);
    return { stack: ctx.stack.name, durationMs: Date.now() - started, data };
  } finally {
    engine.close();
  }
}
