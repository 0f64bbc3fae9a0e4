import type { UpdateSummary } from "@pulumi/pulumi/automation";

/**
 * Updates asked for per `pulumi stack history` call. The CLI answers one page of 10 when no page size is
 * given, so every read names one; a stack with fewer updates than this is read in a single call.
 */
export const historyPageSize = 500;

/**
 * Every update of a stack's history, newest first, read page by page until a page comes back short: a
 * history is only true when it is whole (revisions, the replay check over used approvals, `previous`).
 */
export async function readAllPages(fetchPage: (pageSize: number, page: number) => Promise<UpdateSummary[]>): Promise<UpdateSummary[]> {
  const all: UpdateSummary[] = [];
  for (let page = 1; ; page++) {
    const updates = await fetchPage(historyPageSize, page);
    all.push(...updates);
    if (updates.length < historyPageSize) return all;
  }
}
