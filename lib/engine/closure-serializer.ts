import Module from "node:module";

/** The file whose requires are deferred, and the two requests. */
const runtimeIndex = /[\\/]@pulumi[\\/]pulumi[\\/]runtime[\\/]index\.js$/;
const deferred = new Set(["./closure/serializeClosure", "./closure/codePaths"]);

type Load = (request: string, parent: NodeModule | undefined, isMain: boolean) => unknown;

let installed = false;

/**
 * Makes loading `@pulumi/pulumi` skip its closure serializer until something calls it.
 *
 * `@pulumi/pulumi/runtime/index.js` requires the serializer (`runtime/closure/serializeClosure`) and its
 * code-path finder (`runtime/closure/codePaths`) as it loads, and with them TypeScript and npm's arborist:
 * about half of the modules (some 480 of 890) and of the time of loading the SDK, most of a second of
 * every command that runs the engine on a busy machine. stackpin's programs never call them at run time:
 * their one dynamic provider was serialized when the package was built (`programs/generated-secret.ts`).
 *
 * After this, those two requires of that one file are answered with stand-ins whose functions load the
 * real module on their first call and hand it the call: `pulumi.runtime.serializeFunction` and
 * `computeCodePaths` work as before, a moment later the first time. Every other require, those two
 * modules from anywhere else among them (`pulumi.dynamic` loads the serializer itself), is Node's own.
 * Only for processes stackpin owns (the CLI, a fleet's workers, the dynamic provider plugin), installed
 * before `@pulumi/pulumi` loads; idempotent.
 */
export function deferClosureSerializer(): void {
  if (installed) return;
  installed = true;
  const loader = Module as unknown as { _load: Load };
  const load = loader._load;
  loader._load = function (this: unknown, request, parent, isMain) {
    if (!deferred.has(request) || !parent?.filename || !runtimeIndex.test(parent.filename)) return load.call(this, request, parent, isMain);
    let real: Record<string, unknown> | undefined;
    const module = () => (real ??= load.call(this, request, parent, isMain) as Record<string, unknown>);
    // runtime/index.js copies the functions it re-exports when it loads: each is a function that calls the real one.
    return new Proxy(
      {},
      {
        get: (_, name) => (typeof name === "string" ? (...args: unknown[]) => (module()[name] as (...a: unknown[]) => unknown)(...args) : undefined),
      },
    );
  };
}
