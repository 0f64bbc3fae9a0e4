import type { PulumiFn } from "@pulumi/pulumi/automation";
import type * as z from "zod";

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

/** What a {@link TrafficSwitch} is asked to do: send traffic to `slot`, which should already run `version`. */
export interface SwitchRequest {
  context: ProgramContext;
  /** The program's config as the switch's update will apply it: the stack's and the version's keys as written (`target`, `kubernetes:context`). */
  config: Record<string, unknown>;
  /** The stack's outputs as the newest update left them (plain values). */
  outputs: Record<string, unknown>;
  slot: "blue" | "green";
  version: string;
  /** The version's health check (path, timeouts). */
  health: { path: string; timeoutMs: number; intervalMs: number; retries: number; backoff: number };
}

/** What a {@link TrafficSwitch} did: moved traffic (and when it settled), or nothing, and why. */
export type SwitchOutcome =
  | {
      moved: true;
      /** Epoch ms at which the switch was written (the selector, the route). */
      movedAt: number;
      /** Epoch ms at which every ready endpoint was on the target slot; absent when that was not seen in time. */
      settledAt?: number;
      /** One line for people: what was written and what was seen. */
      detail: string;
    }
  | { moved: false; reason: string };

/**
 * Moves traffic to a slot that is warm (it runs the version, with the current secrets), ready and healthy,
 * before the engine's update that records it; that update then finds the switch already as it wants it.
 * It checks the slot itself first and moves nothing (answering why) when the slot is not ready.
 */
export type TrafficSwitch = (request: SwitchRequest) => Promise<SwitchOutcome>;

/**
 * Given the engine's report of a failed update, when the update failed because the new release never
 * became ready inside it (the program's readiness gate: a Deployment's rollout that stopped progressing),
 * one sentence saying which and why; else undefined.
 */
export type ReadinessExplainer = (report: string) => string | undefined;

/** What an {@link ApplyWatcher} is given: where the update goes, and a way to speak while it runs. */
export interface ApplyWatchRequest {
  context: ProgramContext;
  /** The program's config as the update applies it, secrets left out: the stack's and the version's keys as written (`target`, `kubernetes:context`). */
  config: Record<string, unknown>;
  /** Says one line for people while the update runs (a progress diagnostic). */
  say(line: string): void;
}

/** A watch an {@link ApplyWatcher} started. */
export interface ApplyWatch {
  /** Stops it; resolves with what it found still wrong at that moment and what to do about it, one sentence each (none when all is well). */
  stop(): Promise<string[]>;
}

/**
 * Follows, beside the engine's update, what that update may wait on without saying why (a claim no volume
 * can satisfy), so that a long wait says why while it lasts and a failure says it too. Called as the update
 * starts; undefined when there is nothing to follow. It must stay cheap and never fail the apply.
 */
export type ApplyWatcher = (request: ApplyWatchRequest) => ApplyWatch | undefined;

/** What a {@link ReadinessCheck} is asked: can the stack go back to `version` now, as far as the program's world goes. */
export interface ReadinessRequest {
  context: ProgramContext;
  /** The program's config as a rollback to `version` would apply it (the stack's and the version's keys as they ran), secrets left out. */
  config: Record<string, unknown>;
  /** The stack's outputs as the newest update left them (plain values). */
  outputs: Record<string, unknown>;
  version: string;
  /** When the rollback restores the database: the base backup it starts from and the recovery target time. */
  restore?: { snapshot: string; time: string; source: string };
}

/** One thing a program checked for a way back, with what it found; `window` is the restore window seen (ISO times). */
export interface ReadinessFinding {
  leg: "artifacts" | "database";
  ok: boolean;
  detail: string;
  window?: { from: string; to: string };
}

/**
 * Checks, from what is really there and without changing anything, what a rollback to a version needs
 * from the program's world: the release's artifacts (a file, an image and the cluster objects it relies
 * on) and, when the rollback restores the database, the base backup and the WAL archive up to now.
 */
export type ReadinessCheck = (request: ReadinessRequest) => Promise<ReadinessFinding[]>;

/**
 * A program stackpin can run: given the context, the inline Pulumi program; `config` declares its config,
 * `reconcile` cleans up after an interrupted update, `switchTraffic` moves traffic first on a switch-back,
 * `explainFailure` and `explainNotReady` read the engine's failures, `watchDuringApply` follows an update,
 * `checkReadiness` answers whether the way back to a version still works.
 */
export type ProgramFactory = ((context: ProgramContext) => PulumiFn) & {
  config?: ProgramConfigSpec;
  reconcile?: ProgramReconciler;
  explainFailure?: FailureExplainer;
  explainNotReady?: ReadinessExplainer;
  switchTraffic?: TrafficSwitch;
  watchDuringApply?: ApplyWatcher;
  checkReadiness?: ReadinessCheck;
};
