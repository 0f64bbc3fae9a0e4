import fc from "fast-check";
import { stringify } from "yaml";
import { ExitCode } from "../../lib/errors";

/**
 * Generators of hostile and ordinary input for the fuzz suites (unit and e2e): version files for the
 * `local` program (valid ones, type errors, missing and unknown keys, foreign namespaces, YAML bombs,
 * deep nesting, oversized and garbage files) and CLI argument lists.
 */

/** The seed of every fuzz run: fixed, printed, and replayable with `STACKPIN_FUZZ_SEED`. */
export const fuzzSeed = Number(process.env.STACKPIN_FUZZ_SEED ?? 20261125);

/** The exit codes the README documents, less 1 (an internal error is a bug). */
export const documentedCodes = new Set<number>(Object.values(ExitCode).filter((c) => c !== ExitCode.internal));

/** True when output carries a stack trace (a line like `    at f (file.js:1:2)`). */
export const hasStackTrace = (text: string) => /^\s+at .+(\(.*:\d+:\d+\)|:\d+:\d+)$/m.test(text);

/** A generated version file: its text, and how it was made (printed when a case fails). */
export interface VersionCase {
  text: string;
  kind: string;
}

/** The local program's config keys. */
export const localKeys = ["message", "artifact", "replicas", "features", "banner", "region", "dataDir", "publicPort", "drainMs", "rolloutDelayMs", "apiToken", "cacheUrl", "database"];

const scalar = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom("", "0", "-1", "1e999", "NaN", "../../etc", "/abs", "hello-9.9.9", "hello-service", "  ", "🙂", "\u0000"),
);
/** Any value a YAML file may hold, biased to the awkward ones. */
export const anyValue = fc.oneof(
  { weight: 3, arbitrary: scalar },
  { weight: 1, arbitrary: fc.array(scalar, { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 8 }), scalar, { maxKeys: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom([1, 2], { secure: "v1:abc" }, { secure: 1 }, { secret: "hunter2" }, { a: { b: { c: [] } } }) },
);

/** Config the local program accepts, by construction (no port, no smoke command: it deploys anywhere). */
export const validConfig = fc.record(
  {
    message: fc.oneof(fc.string({ maxLength: 40 }), fc.string({ maxLength: 20, unit: "grapheme" })),
    artifact: fc.constantFrom("hello-1.0.0", "hello-1.1.0"),
    replicas: fc.integer({ min: 0, max: 5 }),
    features: fc.dictionary(fc.constantFrom("search", "beta", "dark-mode"), fc.boolean(), { maxKeys: 3 }),
    banner: fc.string({ maxLength: 30 }),
    region: fc.constantFrom("local", "local-2", "eu"),
    dataDir: fc.constantFrom("app", "app-data", "data/v9"),
  },
  { requiredKeys: ["message"] },
);

/** A version file the local program deploys (the live secret's generation kept). */
export function deployableVersion(name: string): fc.Arbitrary<VersionCase> {
  return fc
    .record({ config: validConfig, description: fc.option(fc.string({ maxLength: 30 }), { nil: undefined }) })
    .map(({ config, description }) => ({
      kind: "valid",
      text: stringify({ version: name, ...(description !== undefined ? { description } : {}), config, secrets: { apiKey: { generation: 1 } } }),
    }));
}

type Doc = Record<string, unknown> & { config: Record<string, unknown> };
type Mutation = { kind: string; apply: (doc: Doc) => void };

// A key set as an own property (so `__proto__` is a key, not the prototype); skipped once a mutation
// made `config` something other than a mapping.
function setKey(target: Doc, key: string, value: unknown, inConfig = true): void {
  const on = inConfig ? target.config : target;
  if (typeof on !== "object" || on === null || Array.isArray(on)) return;
  Object.defineProperty(on, key, { value, enumerable: true, writable: true, configurable: true });
}

const typo = (key: string) =>
  fc.constantFrom(
    key.toUpperCase(),
    key[0].toUpperCase() + key.slice(1),
    key.slice(0, -1),
    `${key}s`,
    key.length > 2 ? key[1] + key[0] + key.slice(2) : `${key}_`,
    `stackpin-demo:${key}x`,
  );

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ key: fc.constantFrom(...localKeys), value: anyValue }).map(({ key, value }) => ({
    kind: `config.${key} = ${JSON.stringify(value)}`,
    apply: (d: Doc) => setKey(d, key, value),
  })),
  fc.constant<Mutation>({ kind: "no message", apply: (d) => void (typeof d.config === "object" && d.config !== null && delete d.config.message) }),
  fc.constantFrom(...localKeys).chain((key) => typo(key)).map((key) => ({ kind: `unknown key ${key}`, apply: (d: Doc) => setKey(d, key, 1) })),
  fc.record({ key: fc.string({ minLength: 1, maxLength: 12 }), value: anyValue }).map(({ key, value }) => ({
    kind: `key ${JSON.stringify(key)}`,
    apply: (d: Doc) => setKey(d, key, value),
  })),
  fc
    .record({ key: fc.constantFrom("aws:region", "stackpin:version", "stackpin:rollout", "stackpin-demo:message", "stackpin-demo:replicas", "foo:bar", "kubernetes:context", "random:x", "a:b:c", ":x", "x:"), value: anyValue })
    .map(({ key, value }) => ({ kind: `namespaced ${key}`, apply: (d: Doc) => setKey(d, key, value) })),
  fc
    .record({
      field: fc.constantFrom("version", "description", "secrets", "verify", "database", "extra", "config", "__proto__", "constructor"),
      value: anyValue,
    })
    .map(({ field, value }) => ({ kind: `top-level ${field} = ${JSON.stringify(value)}`, apply: (d: Doc) => setKey(d, field, value, false) })),
  fc
    .record({ name: fc.constantFrom("apiKey", "db-password", "Bad Name", "x"), generation: anyValue })
    .map(({ name, generation }) => ({ kind: `secret ${name}`, apply: (d: Doc) => void (d.secrets = { [name]: { generation } }) })),
  fc
    .record({ path: fc.constantFrom("/health", "health", ""), retries: fc.oneof(fc.integer({ min: -2, max: 200 }), scalar), smoke: fc.constantFrom(undefined, [], [{ name: "", run: "" }], [{ name: "x" }]) })
    .map((v) => ({ kind: `verify ${JSON.stringify(v)}`, apply: (d: Doc) => void (d.verify = { health: { path: v.path, retries: v.retries }, ...(v.smoke ? { smoke: v.smoke } : {}) }) })),
  fc
    .record({ schema: fc.oneof(fc.integer({ min: -1, max: 3 }), scalar), up: fc.constantFrom("migrations/none.sql", "../../etc/passwd", "") })
    .map((v) => ({ kind: `database ${JSON.stringify(v)}`, apply: (d: Doc) => void (d.database = { schema: v.schema, migration: { name: "m", up: v.up }, backwardCompatible: true }) })),
);

function aliasBomb(levels: number, width: number): string {
  const lines = ["version: VERSION", "config:", "  message: bomb", `  l0: &l0 [${Array(width).fill('"lol"').join(", ")}]`];
  for (let i = 1; i < levels; i++) lines.push(`  l${i}: &l${i} [${Array(width).fill(`*l${i - 1}`).join(", ")}]`);
  return `${lines.join("\n")}\n`;
}

/** Text-level attacks: YAML bombs, nesting, size, garbage, tags, anchors, duplicate keys. */
function rawText(name: string): fc.Arbitrary<VersionCase> {
  const sub = (t: string) => t.replace(/VERSION/g, name);
  return fc.oneof(
    fc.record({ levels: fc.integer({ min: 2, max: 9 }), width: fc.integer({ min: 2, max: 10 }) }).map(({ levels, width }) => ({ kind: `alias bomb ${levels}x${width}`, text: sub(aliasBomb(levels, width)) })),
    fc.integer({ min: 10, max: 1200 }).map((depth) => ({ kind: `flow nesting ${depth}`, text: sub(`version: VERSION\nconfig:\n  message: deep\n  features: ${"[".repeat(depth)}${"]".repeat(depth)}\n`) })),
    fc.integer({ min: 10, max: 300 }).map((depth) => ({
      kind: `block nesting ${depth}`,
      text: sub(`version: VERSION\nconfig:\n  message: deep\n  features:\n${Array.from({ length: depth }, (_, i) => `${"  ".repeat(i + 2)}k${i}:`).join("\n")} 1\n`),
    })),
    fc.integer({ min: 200, max: 700 }).map((kib) => ({ kind: `${kib} KiB`, text: sub(`version: VERSION\nconfig:\n  message: ${"x".repeat(kib * 1024)}\n`) })),
    fc.string({ unit: "binary", maxLength: 200 }).map((t) => ({ kind: "binary garbage", text: t })),
    fc
      .array(
        fc.constantFrom("{", "}", "[", "]", ": ", "- ", "&a ", "*a ", "*b ", "!!binary ", "!!str ", "!foo ", "? ", "|\n", ">-\n", "\n", "  ", "'", '"', "#", "%YAML 1.1\n", "---\n", "...\n", "<<: ", "version: VERSION\n", "config:\n", "  message: x\n", "  replicas: ", "1", "~", "0x1F", ".inf", "2026-11-25", "\t", "\\u0000", "é"),
        { maxLength: 40 },
      )
      .map((parts) => ({ kind: "token soup", text: sub(parts.join("")) })),
    fc.constantFrom(
      "version: VERSION\nconfig:\n  message: a\n  message: b\n",
      "version: VERSION\nconfig:\n  message: !!binary aGVsbG8=\n",
      "version: VERSION\nconfig:\n  message: x\n  replicas: !!float 2\n",
      "version: VERSION\nconfig:\n  message: x\n  features: &f { a: true }\n  banner: *f\n",
      "version: VERSION\nconfig:\n  message: x\n  <<: { replicas: 2 }\n",
      "version: VERSION\nconfig:\n  message: x\n  ? [a, b]\n  : 1\n",
      "version: VERSION\n---\nversion: VERSION\n",
      "version: VERSION\nconfig: *nothing\n",
      "version: VERSION\nconfig:\n  __proto__: { message: polluted }\n",
      "version: VERSION\nconfig:\n  constructor: { message: x }\n  message: x\n",
      "version: VERSION\nconfig:\n  message: x\n  artifact: ../../../../tmp/x\n",
      "version: VERSION\nconfig:\n  message: x\n  dataDir: ../../../escape\n",
      "version: VERSION\nconfig:\n  message: x\n  dataDir: /etc\n",
      "version: VERSION\nconfig:\n  message: x\n  publicPort: 70000\n",
      "version: VERSION\nconfig: []\n",
      "[]",
      "",
      "null",
      "\uFEFFversion: VERSION\nconfig:\n  message: bom\n",
    ).map((t) => ({ kind: `fixed ${JSON.stringify(t.slice(0, 40))}`, text: sub(t) })),
  );
}

/** A version file named `name`: mostly a valid one with mutations, sometimes a text-level attack. */
export function versionCase(name: string): fc.Arbitrary<VersionCase> {
  const mutated = fc
    .record({ config: validConfig, mutations: fc.array(mutation, { minLength: 0, maxLength: 3 }) })
    .map(({ config, mutations }) => {
      const doc: Doc = { version: name, config: { ...config }, secrets: { apiKey: { generation: 1 } } };
      for (const m of mutations) m.apply(doc);
      return { kind: mutations.length ? mutations.map((m) => m.kind).join("; ") : "valid", text: stringify(doc) };
    });
  return fc.oneof({ weight: 4, arbitrary: mutated }, { weight: 1, arbitrary: rawText(name) });
}

const commands = ["deploy", "preview", "rollback", "restore", "watch", "freeze", "unfreeze", "history", "status", "rotate", "destroy", "setup", "help", "bogus", "audit", "secret"];
const subcommands: Record<string, string[]> = { audit: ["verify", "show", "bogus"], secret: ["set", "get"] };
const flags = [
  "--stack", "-s", "--version", "-v", "--to", "-t", "--yes", "-y", "--json", "--backend", "-m", "--message", "-r", "--reason", "--approve",
  "--approval-file", "--auto-rollback", "--approve-data-loss", "--to-time", "--snapshot", "--interval", "--max-evaluations", "--record-baseline",
  "--secret", "--key", "-k", "--unknown-flag", "--help", "-h", "--", "-",
];
const values = fc.oneof(
  fc.constantFrom("dev", "prod", "nope", "../dev", "dev/..", "v1", "v2", "v9", "v77", "41", "V1", "", "-x", "NaN", "1e999", "-1", "previous", "2026-13-45T99:00:00Z", "\u0000", "x".repeat(500)),
  fc.string({ maxLength: 20 }),
);

/** A command line: a command, then flags and values in any order. */
export const argList: fc.Arbitrary<string[]> = fc
  .record({
    command: fc.constantFrom(...commands),
    sub: fc.constantFrom(...["verify", "show", "set", "get", "bogus"]),
    rest: fc.array(fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...flags) }, { weight: 2, arbitrary: values }), { maxLength: 8 }),
  })
  .map(({ command, sub, rest }) => [command, ...(subcommands[command] ? [subcommands[command].includes(sub) ? sub : subcommands[command][0]] : []), ...rest]);

/** The `stack.yaml` of the copied dev stack, with generated shared config. */
export const stackFileCase: fc.Arbitrary<VersionCase> = fc
  .dictionary(fc.constantFrom(...localKeys, "aws:region", "stackpin:version", "stackpin-demo:drainMs", "bogus"), anyValue, { maxKeys: 3 })
  .map((config) => ({
    kind: `stack.yaml config ${JSON.stringify(config)}`,
    text: stringify({ program: "local", project: "stackpin-demo", secretsProvider: "passphrase", config }),
  }));
