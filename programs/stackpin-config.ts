import * as pulumi from "@pulumi/pulumi";
import type { DatabasePlan } from "../lib/planning/database";
import type { RolloutLayout, Slot, SlotRelease } from "../lib/planning/rollout";
import type { VerifySettings } from "../lib/versions/schema";

/** What stackpin hands every program in the `stackpin` config namespace, typed. */
export interface StackpinConfig {
  /** The version being applied. */
  version: string;
  /** Which release runs in which slot, and which slot takes traffic. */
  rollout: RolloutLayout;
  /** Rotating secrets' generations (never lower than live). */
  secrets: Record<string, number>;
  verify: VerifySettings;
  /** The database plan, when the version declares a database. */
  database?: DatabasePlan;
}

/** Reads the `stackpin:*` config of the running program. */
export function readStackpinConfig(): StackpinConfig {
  const sp = new pulumi.Config("stackpin");
  return {
    version: sp.require("version"),
    rollout: sp.requireObject<RolloutLayout>("rollout"),
    secrets: sp.getObject<Record<string, number>>("secrets") ?? {},
    verify: sp.requireObject<VerifySettings>("verify"),
    database: sp.getObject<DatabasePlan>("database"),
  };
}

/** The slots that run a release, with it, blue first. */
export function runningSlots(rollout: RolloutLayout): Array<[Slot, SlotRelease]> {
  return (["blue", "green"] as const).flatMap((slot) => (rollout.slots[slot] ? [[slot, rollout.slots[slot]!] as [Slot, SlotRelease]] : []));
}

/** The image a release runs: `<repository>:<version>`, unless the release pins `imageTag`. */
export function imageFor(repository: string, release: SlotRelease): string {
  return `${repository}:${String(release.config.imageTag ?? release.version)}`;
}
