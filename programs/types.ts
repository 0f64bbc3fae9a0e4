import type { PulumiFn } from "@pulumi/pulumi/automation";

/** What stackpin tells a program about where it runs; programs never read `process.env` for this. */
export interface ProgramContext {
  /** The stack's name. */
  stackName: string;
  /** A directory the stack owns for local resources (files, processes' data); removed by destroy. */
  stateDir: string;
}

/** A program stackpin can run: given the context, the inline Pulumi program. */
export type ProgramFactory = (context: ProgramContext) => PulumiFn;
