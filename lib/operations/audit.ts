import type { AuditEntry, AuditVerification } from "../records/audit";
import type { EnvironmentContext } from "../environment";
import { auditLogFor } from "../records/trail";

/** Checks the stack's audit trail: every hash, every link, and the head anchored in the backend. */
export async function verifyAudit(ctx: EnvironmentContext): Promise<AuditVerification> {
  const engine = await ctx.openEngine({ create: false });
  try {
    return await auditLogFor(ctx, engine).verify();
  } finally {
    engine.close();
  }
}

/** The audit trail's entries, oldest first (not verified: use {@link verifyAudit}). */
export async function readAudit(ctx: EnvironmentContext): Promise<{ file: string; entries: AuditEntry[] }> {
  const engine = await ctx.openEngine({ create: false });
  try {
    const log = auditLogFor(ctx, engine);
    return { file: log.file, entries: await log.entries() };
  } finally {
    engine.close();
  }
}
