/**
 * Rotating secrets only move forward: the generation applied is the higher of what the target version
 * pins and what is live, so a rollback never brings back a secret that was rotated away (leaked).
 */

/** Secret name → generation. */
export type Generations = Record<string, number>;

/** What will be applied, and the sentences a reviewer must read about it. */
export interface GenerationPlan {
  generations: Generations;
  notes: string[];
}

/** The generations to apply: per secret, max(target, live). Secrets the target drops are kept too. */
export function forwardOnly(target: Generations, live: Generations | undefined, targetVersion: string): GenerationPlan {
  const generations: Generations = {};
  const notes: string[] = [];
  for (const name of [...new Set([...Object.keys(target), ...Object.keys(live ?? {})])].sort()) {
    const want = target[name];
    const now = live?.[name];
    if (want === undefined) {
      generations[name] = now as number;
      notes.push(`secret ${name}: ${targetVersion} does not declare it; generation ${now} stays`);
    } else if (now !== undefined && now > want) {
      generations[name] = now;
      notes.push(
        `secret ${name}: ${targetVersion} pins generation ${want}, but generation ${now} is live; ` +
          `the current secret is kept (secrets never roll back)`,
      );
    } else {
      generations[name] = want;
      if (now !== undefined && want > now) notes.push(`secret ${name}: rotates from generation ${now} to ${want}`);
      if (now === undefined) notes.push(`secret ${name}: generation ${want} is generated`);
    }
  }
  return { generations, notes };
}
