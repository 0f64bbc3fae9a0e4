import type { PulumiFn } from "@pulumi/pulumi/automation";
import type { z } from "zod";

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

/**
 * The config a program accepts, declared beside it so a version file is checked when it is read, before
 * the engine runs: a wrong type, a missing required key or an unknown key is refused with exit 5.
 */
export interface ProgramConfigSpec {
  /** The program's own config (the project's namespace), keys unqualified; a strict zod object. */
  schema: z.ZodObject;
  /** Namespaces other than the project's whose keys belong to the program's providers (`aws` for `aws:region`). */
  providerNamespaces: readonly string[];
  /** The rule for names under a version's `secrets:` when the program derives object names from them. */
  secretName?: z.ZodType<string>;
}

/**
 * Given the engine's report of a failed preview or update, a sentence for people saying what the target
 * lacks and how to provide it, when the program recognises the failure; else undefined.
 */
export type FailureExplainer = (report: string) => string | undefined;

/** A program stackpin can run: given the context, the inline Pulumi program; `config` declares its config, `reconcile` cleans up after an interrupted update. */
export type ProgramFactory = ((context: ProgramContext) => PulumiFn) & { config?: ProgramConfigSpec; reconcile?: ProgramReconciler; explainFailure?: FailureExplainer };
