import type { Command } from "commander";

/**
 * One example per command, shown at the end of its `--help`: the command as a user types it most often.
 * Keyed by the command's path (`snapshot rm`); a group (`snapshot`) shows its most used subcommand.
 */
export const helpExamples: Readonly<Record<string, string>> = {
  deploy: "stackpin deploy --stack dev --version v2          # previews and asks; --yes to skip",
  preview: "stackpin preview --stack dev --to previous        # or --version v3 to preview a deploy",
  rollback: "stackpin rollback --stack prod --to v41 --reason \"error rate 7% after v42\"",
  fleet: "stackpin fleet --emit k8s-jobs --stacks 'prod-*' --to v41 --image registry.example/deploy:1 --out jobs/",
  restore: "stackpin restore --stack shop --to-time 2026-11-24T05:30:00Z --approve-data-loss",
  snapshot: "stackpin snapshot rm pre-v2 --stack shop --approve-data-loss",
  "snapshot rm": "stackpin snapshot rm pre-v2 --stack shop --approve-data-loss",
  approve: "stackpin approve --stack prod --op rollback --to v41 --key ~/.ssh/id_ed25519 --expires 2h",
  watch: "stackpin watch --stack prod --auto-rollback",
  freeze: "stackpin freeze --stack prod --reason \"release freeze until Monday\"",
  unfreeze: "stackpin unfreeze --stack prod --reason \"freeze over\"",
  audit: "stackpin audit verify --stack prod",
  "audit verify": "stackpin audit verify --stack prod",
  "audit show": "stackpin audit show --stack prod --json",
  incident: "stackpin incident show --stack dev --id 20261126T021953Z-dev-v1 --html incident.html",
  "incident show": "stackpin incident show --stack dev --id 20261126T021953Z-dev-v1 --html incident.html",
  history: "stackpin history --stack dev",
  check: "stackpin check --stack prod --all        # exit 19 when a way back does not work",
  status: "stackpin status --stack dev --json",
  rotate: "stackpin rotate --stack dev --secret apiKey        # then deploy the version it writes",
  destroy: "stackpin destroy --stack dev --yes",
  recover: "stackpin recover --stack dev",
  secret: "printf %s \"$TOKEN\" | stackpin secret set --stack dev --version v2 --key apiToken",
  "secret set": "printf %s \"$TOKEN\" | stackpin secret set --stack dev --version v2 --key apiToken",
  adopt: "stackpin adopt --stack prod --as v1 --program ./infra/checkout --backend s3://shop-state",
  setup: "stackpin setup",
};

/** The path of a command below the root (`snapshot rm`). */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/** Adds each command's example (from {@link helpExamples}) after its `--help`, at every depth. */
export function addHelpExamples(program: Command): void {
  for (const cmd of program.commands) {
    const example = helpExamples[commandPath(cmd)];
    if (example) cmd.addHelpText("after", `\nExample:\n  $ ${example}\n`);
    addHelpExamples(cmd);
  }
}
