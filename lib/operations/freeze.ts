import type { EnvironmentContext, ProgressOptions } from "../environment";
import { audit, Freeze, writeFreeze } from "../records/trail";

/** Options for {@link freeze} and {@link unfreeze}. */
export interface FreezeOptions extends ProgressOptions {
  /** Why: shown to everyone whose deploy is refused, and in the audit trail. */
  reason: string;
}

/**
 * Freezes deploys to a stack (rollbacks stay allowed), e.g. during an incident. Stored in stackpin's
 * records in the backend, so every machine sharing the backend sees it; `status` shows it.
 */
export async function freeze(ctx: EnvironmentContext, options: FreezeOptions): Promise<{ stack: string; freeze: Freeze }> {
  const engine = await ctx.openEngine({ create: true });
  try {
    const f: Freeze = { reason: options.reason, by: ctx.actor, at: new Date().toISOString() };
    await writeFreeze(engine, f);
    await audit(ctx, engine, { op: "freeze", result: "succeeded", detail: options.reason }, options);
    return { stack: ctx.stack.name, freeze: f };
  } finally {
    engine.close();
  }
}

/** Lifts a deploy freeze; the reason goes into the audit trail. */
export async function unfreeze(ctx: EnvironmentContext, options: FreezeOptions): Promise<{ stack: string; lifted?: Freeze }> {
  const engine = await ctx.openEngine({ create: true });
  try {
    // Read and lifted in one locked step, so a freeze set meanwhile by someone else is not reported wrong.
    const lifted = await writeFreeze(engine, undefined);
    await audit(ctx, engine, { op: "unfreeze", result: "succeeded", detail: `${options.reason}${lifted ? "" : " (was not frozen)"}` }, options);
    return { stack: ctx.stack.name, lifted };
  } finally {
    engine.close();
  }
}
