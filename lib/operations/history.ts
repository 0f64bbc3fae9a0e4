import type { EnvironmentContext } from "../environment";
import { HistoryEntry, withoutConfig } from "../records/history-record";
import { readHistory } from "./apply";

/** The stack's history from the backend, newest first: every deploy and rollback, and other updates. */
export async function history(ctx: EnvironmentContext): Promise<HistoryEntry[]> {
  // One CLI call (`stack history`) and the records document; the Automation API is not loaded.
  const engine = await ctx.openReader();
  try {
    return (await readHistory(engine)).map(withoutConfig);
  } finally {
    engine.close();
  }
}
