/**
 * `stackpin fleet --emit k8s-jobs`: a fleet rollback for an engine that is not this machine. One
 * Kubernetes Job per stack runs the same `stackpin rollback` a person would (same image, same command),
 * with the backend URL, passphrase and cloud credentials from a Kubernetes Secret; the waves become
 * ordered batches (files applied one after the other, each batch holding at most the wave's concurrency).
 * stackpin schedules nothing itself here: Kubernetes runs the Jobs, the backend holds the state and the
 * locks, and each Job's stackpin refuses (exit 7) if another operation holds its stack.
 */
import * as crypto from "node:crypto";
import * as path from "node:path";
import { stringify } from "yaml";
import { VersionStore } from "../versions/store";
import { FleetSelection, FleetWave, resolveWaves } from "./fleet";

/** Options for {@link emitK8sJobs}. */
export interface EmitK8sJobsOptions {
  projectDir?: string;
  selection: FleetSelection;
  to: string;
  reason?: string;
  concurrency?: number;
  /** The container image holding stackpin and the project (`stacks/`), e.g. `registry/deploy:2026-11-26`. */
  image: string;
  /** The Kubernetes namespace the Jobs run in (default `stackpin`). */
  namespace?: string;
  /** The Secret whose keys become the container's environment: PULUMI_CONFIG_PASSPHRASE, STACKPIN_BACKEND, cloud credentials. */
  secretName?: string;
  /** The project directory inside the image (default `/project`). */
  workdir?: string;
  /** Seconds a Job may run before Kubernetes stops it (default 1800). */
  activeDeadlineSeconds?: number;
}

/** One ordered batch: apply it, wait for every Job in it, then the next. */
export interface JobBatch {
  /** `01-canary`, `02-eu-1`, ...: the order is the name's. */
  name: string;
  wave: string;
  stacks: string[];
  /** The Job manifests, in stack order. */
  jobs: Record<string, unknown>[];
  /** The same, as one multi-document YAML file. */
  yaml: string;
}

/** A DNS-1123 label from a stack and version: lowercase, `[a-z0-9-]`, at most 63 characters, unique by hash when changed. */
export function jobName(stack: string, to: string): string {
  const raw = `stackpin-rollback-${stack}-${to}`;
  const clean = raw.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/-+/g, "-").replace(/^-|-$/g, "");
  if (clean === raw && clean.length <= 63) return clean;
  const hash = crypto.createHash("sha256").update(raw).digest("hex").slice(0, 8);
  return `${clean.slice(0, 63 - 9).replace(/-$/, "")}-${hash}`;
}

const label = (value: string) => value.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "").slice(0, 63);

/** The Jobs for a fleet rollback, as ordered batches (see the file's comment). Reads `stacks/` only; touches no backend. */
export function emitK8sJobs(options: EmitK8sJobsOptions): JobBatch[] {
  const projectDir = path.resolve(options.projectDir ?? ".");
  const store = new VersionStore(path.join(projectDir, "stacks"));
  const { waves } = resolveWaves(store, options.selection, options.concurrency ?? 4);
  const namespace = options.namespace ?? "stackpin";
  const secretName = options.secretName ?? "stackpin";
  const batches: JobBatch[] = [];
  const split = (w: FleetWave) => {
    const parts: string[][] = [];
    for (let i = 0; i < w.stacks.length; i += w.concurrency) parts.push(w.stacks.slice(i, i + w.concurrency));
    return parts;
  };
  for (const wave of waves) {
    const parts = split(wave);
    parts.forEach((stacks, i) => {
      const name = `${String(batches.length + 1).padStart(2, "0")}-${label(wave.name)}${parts.length > 1 ? `-${i + 1}` : ""}`;
      const jobs = stacks.map((stack) => {
        const labels = {
          "app.kubernetes.io/name": "stackpin",
          "app.kubernetes.io/component": "fleet-rollback",
          "stackpin.dev/stack": label(stack),
          "stackpin.dev/wave": label(wave.name),
          "stackpin.dev/batch": name,
        };
        return {
          apiVersion: "batch/v1",
          kind: "Job",
          metadata: { name: jobName(stack, options.to), namespace, labels, annotations: { "stackpin.dev/stack": stack, "stackpin.dev/to": options.to } },
          spec: {
            // A failed rollback is looked at by a person, not retried blindly: the stack may be partly applied.
            backoffLimit: 0,
            activeDeadlineSeconds: options.activeDeadlineSeconds ?? 1800,
            template: {
              metadata: { labels },
              spec: {
                restartPolicy: "Never",
                containers: [
                  {
                    name: "stackpin",
                    image: options.image,
                    workingDir: options.workdir ?? "/project",
                    command: ["npx", "stackpin"],
                    args: ["rollback", "--stack", stack, "--to", options.to, "--yes", "--json", ...(options.reason ? ["--reason", options.reason] : [])],
                    // Everything secret comes from the Secret, never from the manifest.
                    envFrom: [{ secretRef: { name: secretName } }],
                    env: [{ name: "STACKPIN_ACTOR", value: `k8s-job/${jobName(stack, options.to)}` }],
                  },
                ],
              },
            },
          },
        };
      });
      batches.push({ name, wave: wave.name, stacks, jobs, yaml: jobs.map((j) => stringify(j)).join("---\n") });
    });
  }
  return batches;
}
