import * as fs from "node:fs";
import * as path from "node:path";
import * as z from "zod";
import { urlHasPassword } from "../../lib/planning/database-url";
import { secureValueSchema } from "../../lib/versions/schema";
import type { ProgramConfigSpec } from "../types";

const artifactsDir = path.join(__dirname, "..", "..", "..", "programs", "local", "artifacts");

/** The releases the local target can run: `programs/local/artifacts/<name>.js`, less the shared service code. */
export function localArtifacts(): string[] {
  return fs
    .readdirSync(artifactsDir)
    .filter((f) => f.endsWith(".js") && f !== "hello-service.js")
    .map((f) => f.slice(0, -".js".length))
    .sort();
}

// A path under the stack's state directory: relative, no `..`, so a version cannot write elsewhere.
const relativeDir = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/, "must be a relative directory (letters, digits, . _ -; no .. or leading /)");

const milliseconds = z.number().int().min(0).max(600_000);

/**
 * The local target's config (project namespace), as `programs/local/index.ts` reads it. `message` is
 * required; a string setting may be a `secure:` value (Pulumi decrypts it for the program).
 */
export const localConfigSchema = z
  .object({
    /** Served by `/`; required. */
    message: z.string().max(10_000),
    /** The release to run: `programs/local/artifacts/<artifact>.js`. */
    artifact: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "must name an artifact")
      .refine((a) => localArtifacts().includes(a), { message: `must be one of the artifacts in programs/local/artifacts` })
      .optional(),
    replicas: z.number().int().min(0).max(1000).optional(),
    features: z.record(z.string(), z.union([z.boolean(), z.string(), z.number()])).optional(),
    banner: z.string().max(10_000).optional(),
    region: z.string().max(200).optional(),
    /** Where the settings and token files go, under the stack's state directory. */
    dataDir: relativeDir
      .refine((d) => !["run", "secrets", "snapshots", "restores"].includes(d.split("/")[0]), { message: "run, secrets, snapshots and restores are the stack's own directories" })
      .optional(),
    /** The traffic switch's port; 0 picks a free one. */
    publicPort: z.number().int().min(0).max(65_535).optional(),
    drainMs: milliseconds.optional(),
    /** Slows writing the settings file, to make an update last (tests of locks use it). */
    rolloutDelayMs: milliseconds.optional(),
    /** A manual gate: the update pauses at the settings file until this absolute path exists (at most 10 minutes). */
    rolloutHoldFile: z.string().regex(/^\//, "must be an absolute path").max(4096).optional(),
    apiToken: z.union([z.string(), secureValueSchema]).optional(),
    /** Read by release hello-2.0.0, which fails its health check without it. */
    cacheUrl: z.string().min(1).optional(),
    /**
     * A PostgreSQL primary with WAL archiving (usually set in stack.yaml). Its password is a `secure:`
     * value: `password: { secure: ... }` beside a URL without one (`stackpin secret set --path
     * database.password`), or the whole `url` encrypted. A plain URL with a password in it still works,
     * with a warning in every plan.
     */
    database: z
      .object({
        url: z.union([z.string().regex(/^postgres(ql)?:\/\/[^\s]+$/, "must be a postgres:// URL"), secureValueSchema]),
        password: z
          .union([secureValueSchema, z.string()])
          .refine((p) => typeof p !== "string", {
            message: "a plain-text password is not allowed; encrypt it: `stackpin secret set --path --key database.password` (reads it from stdin)",
          })
          .optional(),
        archiveDir: z.string().min(1),
        pgBin: z.string().min(1),
        restoreDir: z.string().min(1).optional(),
      })
      .strict()
      .refine((d) => !(d.password && typeof d.url === "string" && urlHasPassword(d.url)), {
        message: "the password is given twice, in url and in password; keep it only in password",
        path: ["password"],
      })
      .optional(),
  })
  .strict();

/** The local target's config declaration. */
export const localConfig: ProgramConfigSpec = { schema: localConfigSchema, providerNamespaces: [] };
