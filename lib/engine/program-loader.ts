import * as fs from "node:fs";
import * as path from "node:path";
import type { PulumiFn } from "@pulumi/pulumi/automation";
import type { ProgramConfigSpec, ProgramContext, ProgramFactory } from "../../programs/types";
import { ProgramLoadError } from "../errors";

/**
 * A project's own Pulumi program, named in `stack.yaml` by a path (`program: ./infra/checkout`) and run
 * inline like the built-in ones. TypeScript is transpiled as each file is required (transpile-only, with
 * the project's `typescript`, else stackpin's): nothing to build first, no output directory to go stale,
 * and no type errors blocking a rollback in an incident (type-check in the project's own CI).
 */

/** True when `stack.yaml`'s `program` names a path relative to the project rather than a built-in program. */
export function isProgramPath(program: string): boolean {
  return program.startsWith("./") || program.startsWith("../") || path.isAbsolute(program);
}

// Modules stackpin provides to programs: `@pulumi/pulumi` always stackpin's own (the engine runtime an
// inline program registers its resources with is a per-module-instance global: a second copy would
// talk to no engine), `zod` when the project has none.
const always = /^@pulumi\/pulumi(\/.*)?$/;
const fallback = /^zod(\/.*)?$/;
/** Directories whose files get the rules above: each loaded program's project. */
const roots = new Set<string>();
let hooked = false;

function under(file: string | undefined): boolean {
  return !!file && [...roots].some((r) => file === r || file.startsWith(r + path.sep));
}

function loadTypeScript(fromDir: string): typeof import("typescript") {
  for (const base of [fromDir, __dirname]) {
    try {
      return require(require.resolve("typescript", { paths: [base] })) as typeof import("typescript");
    } catch {
      // next
    }
  }
  throw new Error("a TypeScript program needs the `typescript` package: `npm install --save-dev typescript` in the project");
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  // Node's CommonJS loader offers these two seams; ESM programs are not supported (documented).
  const Module = require("node:module") as {
    _resolveFilename: (request: string, parent: { filename?: string } | undefined, ...rest: unknown[]) => string;
    _extensions: Record<string, (module: { _compile(code: string, file: string): void }, file: string) => void>;
  };
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, parent, ...rest) {
    if (under(parent?.filename) && !parent!.filename!.includes(`${path.sep}node_modules${path.sep}`)) {
      if (always.test(request)) return require.resolve(request);
      if (fallback.test(request)) {
        try {
          return resolve.call(this, request, parent, ...rest);
        } catch {
          return require.resolve(request);
        }
      }
    }
    return resolve.call(this, request, parent, ...rest);
  };
  Module._extensions[".ts"] = (module, file) => {
    if (file.includes(`${path.sep}node_modules${path.sep}`)) throw new Error(`${file}: TypeScript inside node_modules is not compiled; use the package's JavaScript`);
    const ts = loadTypeScript(path.dirname(file));
    const out = ts.transpileModule(fs.readFileSync(file, "utf8"), {
      fileName: file,
      reportDiagnostics: true,
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        // Native async/await and classes: Pulumi serializes dynamic providers' functions from their source.
        target: ts.ScriptTarget.ES2022,
        esModuleInterop: true,
        inlineSourceMap: true,
      },
    });
    const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
    if (errors.length) {
      const where = (d: (typeof errors)[number]) => {
        if (!d.file || d.start === undefined) return file;
        const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
        return `${file}:${line + 1}:${character + 1}`;
      };
      throw new Error(errors.map((d) => `${where(d)}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`).join("\n"));
    }
    module._compile(out.outputText, file);
  };
}

/** Finds the module a program path names: a file (`.ts`, `.js`), or a directory with `index` or a `package.json` `main`. */
function resolveModule(file: string): string | undefined {
  hook();
  try {
    return require.resolve(file);
  } catch {
    return undefined;
  }
}

const isZodObject = (v: unknown): v is ProgramConfigSpec["schema"] =>
  !!v && typeof v === "object" && typeof (v as { safeParse?: unknown }).safeParse === "function" && typeof (v as { shape?: unknown }).shape === "object";

/** The config spec a module exports as `config`: a {@link ProgramConfigSpec}, or just its zod object. */
function configSpecOf(value: unknown, where: string): ProgramConfigSpec | undefined {
  if (value === undefined) return undefined;
  if (isZodObject(value)) return { schema: value, providerNamespaces: [] };
  const spec = value as Partial<ProgramConfigSpec>;
  if (spec && typeof spec === "object" && isZodObject(spec.schema)) {
    return { schema: spec.schema, providerNamespaces: Array.isArray(spec.providerNamespaces) ? spec.providerNamespaces : [], secretName: spec.secretName };
  }
  throw new ProgramLoadError(where, "its `config` export is neither a zod object (z.object({...})) nor { schema: <zod object>, providerNamespaces: [...] }");
}

const loaded = new Map<string, ProgramFactory>();

/**
 * Loads the program `stack.yaml` names by path, relative to `projectDir`. Its default export is a Pulumi
 * program function or a {@link ProgramFactory}; an export `config` declares its config (see
 * {@link configSpecOf}). Raises {@link ProgramLoadError} naming the path and what is wrong.
 */
export function loadProgram(projectDir: string, program: string): ProgramFactory {
  const file = path.resolve(projectDir, program);
  const cached = loaded.get(file);
  if (cached) return cached;
  roots.add(path.resolve(projectDir));
  const resolved = resolveModule(file);
  if (!resolved) {
    throw new ProgramLoadError(program, `no module at ${file} (looked for ${file}.ts, ${file}.js and ${file}/index.ts|js)`);
  }
  roots.add(path.dirname(resolved));
  let mod: Record<string, unknown>;
  try {
    mod = require(resolved) as Record<string, unknown>;
  } catch (err) {
    throw new ProgramLoadError(program, `loading ${resolved} failed: ${(err as Error).message.split("\n").slice(0, 6).join("\n")}`);
  }
  const main = (mod.default ?? (typeof mod === "function" ? mod : undefined)) as (PulumiFn | ProgramFactory | undefined);
  if (typeof main !== "function") {
    throw new ProgramLoadError(program, `${resolved} has no default export function (\`export default async () => { ... }\`, or a factory taking the stack's context)`);
  }
  const config = configSpecOf(mod.config ?? (main as ProgramFactory).config, program);
  // A program function is called by the engine with no argument; a factory takes the context and
  // returns the program. Calling the export with the context and looking at what comes back tells them
  // apart without guessing from its arity.
  const factory: ProgramFactory = Object.assign(
    (context: ProgramContext): PulumiFn =>
      async () => {
        const result = (main as (c: ProgramContext) => unknown)(context);
        return (typeof result === "function" ? await (result as PulumiFn)() : await result) as Awaited<ReturnType<PulumiFn>>;
      },
    { config, reconcile: (main as ProgramFactory).reconcile },
  );
  loaded.set(file, factory);
  return factory;
}
