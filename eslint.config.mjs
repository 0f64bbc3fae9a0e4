// Type-aware lint for the TypeScript in lib/, programs/, scripts/ and test/ (`npm run lint`).
// A small set of rules, each one catching a kind of bug the compiler lets through: a promise nobody
// awaits loses its error, an async callback where Node expects a plain one rejects into the void.
import tseslint from "typescript-eslint";

export default tseslint.config(
  // The build output and the plain JavaScript the local program runs as processes are not linted.
  { ignores: ["dist/**", "node_modules/**", "**/*.js", "**/*.cjs", "**/*.mjs"] },
  {
    files: ["lib/**/*.ts", "programs/**/*.ts", "scripts/**/*.ts", "test/**/*.ts"],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { project: "./tsconfig.json", tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "@typescript-eslint": tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      // Promises: awaited, or handed on, or explicitly `void` where fire-and-forget is meant.
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/await-thenable": "error",
      // A `return promise` inside try/catch/finally must be awaited, or the catch and finally miss its failure.
      "@typescript-eslint/return-await": ["error", "in-try-catch"],
      "no-async-promise-executor": "error",
      // Errors: only Error objects are thrown (they carry a stack and a class the CLI maps to an exit code).
      "@typescript-eslint/only-throw-error": "error",
      // A switch over a union handles every member, so a new one is not silently ignored.
      "@typescript-eslint/switch-exhaustiveness-check": "error",
      // `const { omitted: _, ...rest } = o` is how a key is left out of a copy.
      "@typescript-eslint/no-unused-vars": ["error", { ignoreRestSiblings: true }],
    },
  },
);
