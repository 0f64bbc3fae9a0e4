import * as fs from "node:fs";
import { Document, isCollection, isScalar, parseDocument, visit } from "yaml";
import { InvalidVersionFileError } from "../errors";

/**
 * Limits on YAML that stackpin reads from users (version files, `stack.yaml`, `Pulumi.yaml`, approval
 * files). A version file is a few kilobytes; these bound what a hostile or broken file can cost.
 */
export const yamlLimits = {
  /** Bytes a file may have. */
  maxBytes: 256 * 1024,
  /** How deep mappings and lists may nest (a version file needs about 6). */
  maxDepth: 32,
  /**
   * The `yaml` package's alias budget: it counts every node an alias expands to, so a "billion laughs"
   * file stops here instead of taking the machine's memory.
   */
  maxAliasCount: 100,
} as const;

function refuse(file: string, problem: string): never {
  throw new InvalidVersionFileError(file, [problem]);
}

function depthOf(value: unknown, limit: number): number {
  // Iterative so that the check itself cannot overflow the stack.
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    max = Math.max(max, d + 1);
    if (max > limit) return max;
    for (const child of Object.values(v as object)) stack.push([child, d + 1]);
  }
  return max;
}

/**
 * Parses YAML text from a user's file into a document, within {@link yamlLimits}. Syntax errors,
 * duplicate keys and exceeded limits raise {@link InvalidVersionFileError} naming `file`; nothing else
 * escapes (a parser failure on hostile input is the input's fault, not a bug to report as exit 1).
 */
export function parseYamlDocument(text: string, file: string): Document {
  if (Buffer.byteLength(text, "utf8") > yamlLimits.maxBytes) {
    refuse(file, `(file): larger than ${yamlLimits.maxBytes / 1024} KiB; a version file is a few KiB`);
  }
  let doc: Document;
  try {
    doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    refuse(file, `(file): not parseable YAML (${(err as Error).message.split("\n")[0]})`);
  }
  if (doc.errors.length) {
    throw new InvalidVersionFileError(
      file,
      doc.errors.map((e) => (/Maximum call stack/.test(e.message) ? `(file): nested deeper than ${yamlLimits.maxDepth} levels` : e.message.split("\n")[0])),
    );
  }
  // Warnings are unknown tags and directives: in a version file they are mistakes, not extensions.
  const problems = doc.warnings.map((w) => w.message.split("\n")[0]);
  visit(doc, {
    Pair(_, pair) {
      if (isCollection(pair.key)) problems.push(`(file): a key is a list or mapping (${String(pair.key).slice(0, 40)}); keys are plain names`);
      // JavaScript would drop it (or take it as a prototype) instead of refusing it as unknown.
      else if (isScalar(pair.key) && pair.key.value === "__proto__") problems.push("(file): __proto__ is not a key stackpin or a program reads");
    },
  });
  if (problems.length) throw new InvalidVersionFileError(file, problems);
  return doc;
}

/** Converts a parsed document to plain values within {@link yamlLimits} (aliases and depth). */
export function yamlDocumentToJs(doc: Document, file: string): unknown {
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: yamlLimits.maxAliasCount });
  } catch (err) {
    const message = (err as Error).message.split("\n")[0];
    refuse(file, /alias/i.test(message) ? `(file): too many aliases (${message}); at most ${yamlLimits.maxAliasCount} alias expansions` : `(file): ${message}`);
  }
  if (depthOf(value, yamlLimits.maxDepth) > yamlLimits.maxDepth) refuse(file, `(file): nested deeper than ${yamlLimits.maxDepth} levels`);
  return value;
}

/** Parses YAML text from a user's file into plain values, within {@link yamlLimits}. */
export function parseYamlInput(text: string, file: string): unknown {
  return yamlDocumentToJs(parseYamlDocument(text, file), file);
}

/** Reads and parses a user's YAML file within {@link yamlLimits}; the size is checked before reading. */
export function readYamlFile(file: string): unknown {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (err) {
    refuse(file, `(file): cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (size > yamlLimits.maxBytes) refuse(file, `(file): larger than ${yamlLimits.maxBytes / 1024} KiB; a version file is a few KiB`);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    refuse(file, `(file): cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseYamlInput(text, file);
}
