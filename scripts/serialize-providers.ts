/**
 * The third step of `npm run build`, after tsc: serializes the programs' shared dynamic provider (a
 * rotating secret's value, `programs/generated-secret.ts`) with Pulumi's own closure serializer, into
 * `dist/programs/generated-secret.provider.json`, so that a command's program run does not load the
 * serializer (TypeScript, the inspector and npm's arborist with it) to produce the same text again.
 */
import { writeBuiltProvider } from "../programs/generated-secret";

writeBuiltProvider().catch((err: Error) => {
  process.stderr.write(`error: could not serialize the generated-secret provider: ${err.message}\n`);
  process.exitCode = 1;
});
