import * as z from "zod";

/** A version name: `v` and a number, with optional dotted parts (`v41`, `v41.1`). */
export const versionNamePattern = /^v\d+(\.\d+)*$/;

/** An encrypted config value, as Pulumi writes it: the ciphertext, never the plain value. */
export const secureValueSchema = z.object({ secure: z.string().min(1) }).strict();

const jsonValue: z.ZodType<unknown> = z.lazy(() =>
  z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(jsonValue), z.record(z.string(), jsonValue)]),
);

/**
 * A config value: a plain scalar, structured config (objects and lists), or a `{ secure: <ciphertext> }` secret.
 * A `secret:` key holding a plain value is refused: secrets are written with `stackpin secret`.
 */
export const configValueSchema = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  secureValueSchema,
  z
    .record(z.string(), jsonValue)
    .refine((v) => !("secure" in v), { message: "a secure value must be a single string ciphertext" })
    .refine((v) => !("secret" in v), {
      message: "plain-text secrets are not allowed; encrypt with `stackpin secret set`",
    }),
  z.array(jsonValue),
]);

/** How stackpin verifies a version after every apply. Every field has a safe default. */
export const verifySchema = z
  .object({
    health: z
      .object({
        /** Path of the health endpoint under the program's `endpoint` output. */
        path: z.string().startsWith("/").default("/health"),
        /** Attempts before the check fails. */
        retries: z.number().int().min(0).max(100).default(5),
        /** Delay before the first retry, in ms; each later one multiplies it by `backoff`. */
        intervalMs: z.number().int().min(0).max(600_000).default(200),
        backoff: z.number().min(1).max(10).default(2),
        /** Timeout of one request, in ms. */
        timeoutMs: z.number().int().min(1).max(600_000).default(2000),
      })
      .strict()
      .prefault({}),
    /** Require `/health` to report the target version in its `version` field. */
    checkVersion: z.boolean().default(true),
    /**
     * Variables smoke commands get from the operator's environment, besides PATH, HOME, LANG, TMPDIR and
     * `ENDPOINT`; nothing else reaches them. Their output is recorded with credentials redacted.
     */
    smokeEnv: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "an environment variable name")).optional(),
    /** Shell commands run after the health check, with `ENDPOINT` set; each must exit 0. */
    smoke: z
      .array(
        z
          .object({
            name: z.string().min(1),
            run: z.string().min(1),
            timeoutMs: z.number().int().min(1).max(600_000).default(10_000),
          })
          .strict(),
      )
      .default([]),
  })
  .strict();

/** A secret stackpin generates and rotates; the version pins its generation, never its value. */
export const rotatingSecretSchema = z.object({ generation: z.number().int().min(1) }).strict();

/** The database change a version makes, for the rollback policy. */
export const databaseSchema = z
  .object({
    /** The schema version this version's app needs. */
    schema: z.number().int().min(0),
    /** How to reach `schema` from the one before; absent when `schema` did not change. */
    migration: z
      .object({
        name: z.string().min(1),
        /** SQL file, relative to the stack's directory. */
        up: z.string().min(1),
        /** SQL undoing `up`, when one exists; data only the new schema held is lost. */
        down: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    /** True when the previous release works with this schema too (expand/contract). */
    backwardCompatible: z.boolean(),
  })
  .strict();

const configKeyPattern = /^([A-Za-z0-9_.-]+:)?[A-Za-z0-9_.-]+$/;

/** One file `stacks/<stack>/<version>.yaml`: the complete desired config of the stack at that version. */
export const versionFileSchema = z
  .object({
    /** Must equal the file's name without `.yaml`, so a copied file cannot pose as another version. */
    version: z.string().regex(versionNamePattern, "must look like v41 or v41.1"),
    /** One line for people reading history and previews. */
    description: z.string().optional(),
    /** Config keys (`key` or `namespace:key`) and values. */
    config: z.record(z.string().regex(configKeyPattern, "config keys look like key or namespace:key"), configValueSchema),
    /** Generated secrets by name; a rollback never lowers a generation. */
    secrets: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9_-]*$/, "secret names are identifiers"), rotatingSecretSchema).default({}),
    /** Verification after every apply of this version. */
    verify: verifySchema.prefault({}),
    /** The schema this version needs and the migration that gets there. */
    database: databaseSchema.optional(),
  })
  .strict();

/** A rule that fires a rollback: a Prometheus query over a threshold, or consecutive health-check failures. */
export const triggerRuleSchema = z.union([
  z
    .object({
      /** Shown in every evaluation, the incident record and notifications. */
      name: z.string().min(1),
      /** A PromQL instant query; the highest sample of its result is compared. */
      query: z.string().min(1),
      /** Fires when the value is above this. */
      above: z.number().optional(),
      /** Fires when the value is above this many times the baseline (`baseline`, or one recorded with `watch --record-baseline`). */
      aboveBaseline: z.number().positive().optional(),
      baseline: z.number().positive().optional(),
      /** How long the condition must hold before it fires (sustained), in ms. */
      forMs: z.number().int().min(0).default(0),
    })
    .strict()
    .refine((r) => r.above !== undefined || r.aboveBaseline !== undefined, { message: "a query rule needs above or aboveBaseline" }),
  z
    .object({
      name: z.string().min(1),
      /** Fires after this many consecutive failed health checks of the program's endpoint. */
      healthFailures: z.number().int().min(1),
    })
    .strict(),
]);

/** Time between `watch` evaluations, in ms: the policy's `intervalMs` and `watch --interval` alike. */
export const watchIntervalSchema = z.number().int().min(50).max(86_400_000);

/**
 * What can need an approval: deploy, rollback, restore (any point-in-time restore), rollback-incompatible
 * (a rollback across a backward-incompatible change). A stack's policy and a machine's policy both list these.
 */
export const approvalCategorySchema = z.enum(["deploy", "rollback", "restore", "rollback-incompatible"]);

/** The operations around a rollback, per stack: triggers, readiness checks, approvals, notifications. */
export const policySchema = z
  .object({
    triggers: z
      .object({
        /** Time between evaluations, in ms. */
        intervalMs: watchIntervalSchema.default(15_000),
        /** The Prometheus-compatible server whose `/api/v1/query` the query rules ask. */
        prometheus: z.string().url().optional(),
        /** The health check of health rules: path under the program's `endpoint`, and timeout. */
        healthPath: z.string().startsWith("/").default("/health"),
        timeoutMs: z.number().int().min(1).default(2000),
        /** After its rollback, how long `watch` keeps evaluating the query rules until each is back within its bound, and records what it saw in the incident (0: it does not wait). */
        recoveryTimeoutMs: z.number().int().min(0).max(3_600_000).default(0),
        /**
         * When `watch --auto-rollback` rolls back by itself, and when it pages instead (exit 15, the
         * `rollback.withheld` webhook, an incident record saying why). It never rolls back a failed rollback
         * or a version an automatic rollback put live, and waits while another operation holds the stack.
         */
        autoRollback: z
          .object({
            /** The newest apply must have ended less than this long ago (ms; default 60 min): an older change is not what broke. */
            maxChangeAgeMs: z.number().int().min(0).max(30 * 86_400_000).default(3_600_000),
            /** At most this many automatic rollbacks by `watch` in any `windowMs` (default 1), counted from the stack's history; 0: never. */
            maxRollbacks: z.number().int().min(0).max(100).default(1),
            /** The window of `maxRollbacks`, in ms (default 60 min). */
            windowMs: z.number().int().min(1).max(30 * 86_400_000).default(3_600_000),
          })
          .strict()
          .prefault({}),
        rules: z.array(triggerRuleSchema).min(1),
      })
      .strict()
      .optional(),
    approvals: z
      .object({
        /** Operations that need an approval: deploy, rollback, restore (any point-in-time restore), rollback-incompatible (a rollback across a backward-incompatible change). Added to what a machine policy requires, never removed from it. */
        require: z.array(approvalCategorySchema).default([]),
        /** Who may approve: principals of `allowedSigners`, each signing with `stackpin approve`. Empty: any principal there, or, without `allowedSigners`, anyone named with `--approve NAME` (unsigned). A machine policy's own approvers replace these. */
        approvers: z.array(z.string().min(1)).default([]),
        /** An SSH allowed-signers file (as `git` uses for signed commits), relative to the stack's directory or absolute; a machine policy's own (`lib/policy/machine-policy.ts`) replaces it. */
        allowedSigners: z.string().min(1).optional(),
      })
      .strict()
      .refine((a) => a.approvers.length === 0 || a.allowedSigners !== undefined, {
        message: "approvers sign their approvals: name the allowed-signers file holding their keys in allowedSigners",
        path: ["allowedSigners"],
      })
      .optional(),
    readiness: z
      .object({
        /** Time between `watch`'s checks of the ways back (start to start; each previews every way back), in ms. */
        intervalMs: z.number().int().min(1000).max(86_400_000).default(300_000),
      })
      .strict()
      .optional(),
    notify: z
      .object({
        /** Slack-compatible incoming webhook URLs, told when a rollback starts, completes or fails, and when a way back `watch` checks breaks or comes back. */
        webhooks: z.array(z.string().url()).default([]),
        timeoutMs: z.number().int().min(1).default(3000),
      })
      .strict()
      .optional(),
  })
  .strict();

/**
 * The KMS secrets providers Pulumi's CLI opens (gocloud.dev's keepers it registers): the key stays in the
 * KMS, Pulumi keeps a data key encrypted by it. Anything else would silently become passphrase encryption.
 */
export const kmsSecretsProviderPattern = /^(awskms|gcpkms|azurekeyvault|hashivault):\/\/[^\s]+$/;

/** `stacks/<stack>/stack.yaml`: what does not change between versions. */
export const stackFileSchema = z
  .object({
    /** Which program the stack runs: a built-in one (`local`, `aws`, `kubernetes`) or a path to the project's own (`./infra/checkout`). */
    program: z.string().min(1),
    /** The Pulumi project name; defaults to `Pulumi.yaml`'s `name`, else `stackpin`. */
    project: z.string().regex(/^[A-Za-z0-9_.-]+$/).optional(),
    /** `passphrase`, or a KMS key URL Pulumi opens itself (`awskms://`, `gcpkms://`, `azurekeyvault://`, `hashivault://`). */
    secretsProvider: z
      .string()
      .default("passphrase")
      .refine((p) => p === "passphrase" || kmsSecretsProviderPattern.test(p), {
        message:
          "not a secrets provider stackpin can use: write passphrase, or a KMS key URL (awskms://, gcpkms://, azurekeyvault://, hashivault://)",
      }),
    /** The passphrase provider's salt, written on the stack's first deploy or `secret set`; not secret, needed to decrypt. */
    encryptionsalt: z.string().optional(),
    /** A KMS provider's data key, encrypted by the KMS, written on the stack's first use; not secret, needed to decrypt. */
    encryptedkey: z.string().optional(),
    /** The state backend URL; overrides the default `file://<project>/.stackpin/state`. */
    backend: z.string().optional(),
    /** Config shared by every version (where the database is, ports); a version's own config wins. */
    config: z.record(z.string(), configValueSchema).default({}),
    /** Triggers, approvals and notifications around rollbacks. */
    policy: policySchema.prefault({}),
    /**
     * The lease a running operation holds on the stack: renewed every few seconds while it runs, so that
     * another machine takes a stack over from a killed operation only once its lease has lapsed.
     */
    lease: z
      .object({
        /** How long the lease holds without renewal; long enough for a slow store or a paused process. */
        ttlSeconds: z.number().int().min(15).max(86_400).default(120),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** The parts of the top-level `Pulumi.yaml` stackpin reads. */
export const pulumiProjectSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/),
    backend: z.object({ url: z.string().min(1) }).partial().optional(),
  })
  .passthrough();

/** A parsed version file. */
export type VersionFile = z.infer<typeof versionFileSchema>;
/** A parsed stack file. */
export type StackFile = z.infer<typeof stackFileSchema>;
/** One thing that can need an approval. */
export type ApprovalCategory = z.infer<typeof approvalCategorySchema>;
/** A stack's policy, defaults filled in. */
export type Policy = z.infer<typeof policySchema>;
/** One trigger rule. */
export type TriggerRule = z.infer<typeof triggerRuleSchema>;
/** A version's database section. */
export type DatabaseSpec = z.infer<typeof databaseSchema>;
/** Verification settings with defaults filled in. */
export type VerifySettings = z.infer<typeof verifySchema>;
/** A config value as it may appear in a version file. */
export type ConfigValue = z.infer<typeof configValueSchema>;

/** Turns zod issues into one line each: `config.port: expected string`. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => `${i.path.length ? i.path.join(".") : "(file)"}: ${i.message}`);
}
