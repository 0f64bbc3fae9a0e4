/**
 * Which folder may import which, checked by `npm run lint` (dependency-cruiser).
 *
 * The layers: `lib/` is the library and the CLI; `programs/` are the Pulumi programs a stack can name,
 * and may use `lib/`'s plain helpers and types; `scripts/` and `test/` may import anything. The
 * engine-facing code in `lib/` sees a program only through `programs/types.ts` and a program's
 * `schema.ts`; the registry of built-in programs (`programs/index.ts`, which loads each program's code
 * lazily) is handed in by the entry points: `lib/index.ts`, `lib/cli/main.ts`, and
 * `lib/operations/fleet-worker.ts`, the process a fleet rollback runs each stack in.
 */
/** @type {import("dependency-cruiser").IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment:
        "An import circle: a module that (through others) imports itself. Type-only imports count too: a " +
        "circle of types is still two modules that cannot be read or moved apart. Break it by moving the " +
        "shared part into a module both import.",
      from: { path: "^(lib|programs|scripts)/" },
      to: { circular: true },
    },
    {
      name: "lib-not-to-program-code",
      severity: "error",
      comment:
        "lib/ runs any program through the ProgramFactory interface; it may read programs/types.ts and a " +
        "program's schema.ts (to check a version file without loading the program), never a program's code.",
      from: { path: "^lib/", pathNot: "^lib/(index|cli/main|operations/fleet-worker)\\.ts$" },
      to: { path: "^programs/", pathNot: "^programs/(types\\.ts|[^/]+/schema\\.ts)$" },
    },
    {
      name: "entry-points-to-program-registry-only",
      severity: "error",
      comment:
        "The entry points (the library's, the CLI's, and the fleet's per-stack process) hand the built-in " +
        "programs to the library; beyond what the rest of lib/ may import, they may import the registry " +
        "programs/index.ts, which loads each program only when a stack names it.",
      from: { path: "^lib/(index|cli/main|operations/fleet-worker)\\.ts$" },
      to: { path: "^programs/", pathNot: "^programs/(index\\.ts|types\\.ts|[^/]+/schema\\.ts)$" },
    },
    {
      name: "lib-not-to-test-or-scripts",
      severity: "error",
      comment: "The library ships without test/ and scripts/ (the package holds dist/lib and dist/programs).",
      from: { path: "^lib/" },
      to: { path: "^(test|scripts)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^dist/" },
    // Type-only imports are kept (they vanish from the JavaScript, not from the design).
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["require", "node", "default", "types"] },
  },
};
