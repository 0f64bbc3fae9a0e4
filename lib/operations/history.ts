import type { EnvironmentContext } from "../environment";
import type { HistoryEntry } from "../history-record";
import { readHistory } from "./apply";

/** The stack's history from the backend, newest first: every deploy and rollback, and other updates. */
export async function history(ctx: EnvironmentContext): Promise<HistoryEntry[]> {
  const engine = await ctx.openEngine({ create: false });
  try {
    return await readHistory(engine);
  } finally {
    engine.close();
  }
}
