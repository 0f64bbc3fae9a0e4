import type { OpMap } from "@pulumi/pulumi/automation";
import type { ResourceStep } from "../engine/stack";
import type { DataResource } from "../planning/data-resources";
import type { RolloutLayout, RolloutMove } from "../planning/rollout";
import type { Generations } from "../planning/secret-generations";
import type { ConfigChange } from "../versions/config-diff";

/** What an apply would do: the config diff between versions and the engine's planned resource changes. */
export interface Plan {
  stack: string;
  op: "deploy" | "rollback" | "restore";
  /** The live version now (absent before the first apply). */
  from?: string;
  to: string;
  /** The target version's description line. */
  description?: string;
  configChanges: ConfigChange[];
  /** Resources the engine would create, update, replace or delete (unchanged ones are left out). */
  resourceChanges: ResourceStep[];
  /**
   * The data-holding resources the engine's steps really delete (a delete or replace of one that is
   * neither kept on delete nor protected): applying the plan needs `--approve-data-loss`, whatever the verb.
   */
  dataAtRisk: DataResource[];
  /** Counts per engine operation, `same` included. */
  changeSummary: OpMap;
  /** How traffic moves between the blue and green slots. */
  rollout: { move: RolloutMove; before?: RolloutLayout; after: RolloutLayout };
  /** Secret generations live now and to be applied (never lower than live). */
  secretGenerations: { live: Generations; applied: Generations };
  /** The database policy and what it does, when the version declares a database. */
  database?: {
    policy: string;
    schemaBefore: number;
    schemaAfter: number;
    /** The snapshot this apply takes before migrating. */
    snapshot?: string;
    restore?: { name: string; snapshot: string; time: string; source: string };
    /** The database instance the app uses after the apply: `primary` or a restore's name. */
    live: string;
    /** The snapshot or restored database this apply removes (an approved retention step). */
    remove?: string;
    /** Data written in this window is lost (restores only). */
    dataLossWindow?: { from: string; to: string };
  };
  /** What will happen, in words: the traffic move, each secret, the database. */
  notes: string[];
  /** Things a reviewer must read before applying, in words. */
  warnings: string[];
  /**
   * The digest of what would be applied (see `lib/policy/plan-digest.ts`): what an approver signs. It changes
   * when the version files, the stack's config or the live state change, and after any new update.
   */
  planDigest: string;
  /** The newest history revision the plan was computed from. */
  baseRevision: number;
}

/** True when applying the plan would change nothing at all. */
export function planIsEmpty(plan: Plan): boolean {
  return plan.configChanges.length === 0 && plan.resourceChanges.length === 0;
}
