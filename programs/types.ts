import type { PulumiFn } from "@pulumi/pulumi/automation";

/** What stackpin tells a program about where it runs; programs never read `process.env` for this. */
export interface ProgramContext {
  /** The stack's name. */
  stackName: string;
  /** A directory the stack owns for local resources (files, processes' data); removed by destroy. */
  stateDir: string;
}

/** A resource as the stack's state records it; what {@link ProgramReconciler} compares the world with. */
export interface StateResourceView {
  urn: string;
  type: string;
  outputs: Record<string, unknown>;
}

/**
 * Called after an interrupted update: stops what the program started outside the engine's reach that
 * nothing in the state owns (a process whose create was never recorded). Returns one line per thing stopped.
 */
export type ProgramReconciler = (context: ProgramContext, state: StateResourceView[]) => Promise<string[]>;

/** A program stackpin can run: given the context, the inline Pulumi program; optionally its reconciler. */
export type ProgramFactory = ((context: ProgramContext) => PulumiFn) & { reconcile?: ProgramReconciler };
