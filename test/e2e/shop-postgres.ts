import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { findPgBin, LocalPostgres, startPostgres } from "../../scripts/local-postgres";
import { pulumiOrSkip, TempProject, tempProject } from "./harness";

/**
 * The database suites' start: the `shop` fixture in a temp project and a throw-away PostgreSQL under it.
 * Without PostgreSQL's server binaries the suite is skipped with a banner, or fails under STACKPIN_REQUIRE_E2E.
 */
export async function shopWithPostgres(ctx: Mocha.Context): Promise<{ project: TempProject; pg: LocalPostgres }> {
  const pulumi = await pulumiOrSkip(ctx);
  if (!findPgBin()) {
    if (process.env.STACKPIN_REQUIRE_E2E === "1") throw new Error("PostgreSQL server binaries are missing (apt-get install postgresql)");
    process.stderr.write("\n  DATABASE TESTS SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql\n");
    ctx.skip();
  }
  const project = tempProject(pulumi, { stack: "shop", from: path.join(packageRoot(), "test", "fixtures", "shop") });
  const pg = await startPostgres(path.join(project.dir, "pg"));
  return { project, pg };
}

/** Points the `shop` stack at `pg` (the stack-wide `database` config every version reads). */
export function pointShopAt(project: TempProject, pg: LocalPostgres): void {
  fs.appendFileSync(
    path.join(project.dir, "stacks", "shop", "stack.yaml"),
    stringify({ config: { database: { url: pg.url, archiveDir: pg.archiveDir, pgBin: pg.pgBin } } }),
  );
}
