// @ts-check
// The local target's service: one HTTP server per release, started by the stack from a versioned
// artifact (hello-<release>.js). Settings arrive as JSON in STACKPIN_SETTINGS; generated secrets as
// files named in STACKPIN_SECRET_FILES, re-read on use so a rotation needs no restart.
"use strict";
const fs = require("node:fs");
const http = require("node:http");
const { serveManaged } = require("../managed-server");

/**
 * Starts the service.
 * @param {{ release: string, check?: (settings: Record<string, unknown>) => string | undefined }} artifact
 *   `check` returns a reason when the release cannot serve with these settings (its health then fails).
 */
function start(artifact) {
  const version = process.env.STACKPIN_VERSION ?? "unknown";
  const settings = JSON.parse(process.env.STACKPIN_SETTINGS ?? "{}");
  const secretFiles = JSON.parse(process.env.STACKPIN_SECRET_FILES ?? "{}");
  const readySince = Date.now();

  /** @returns {Record<string, number>} */
  function secretGenerations() {
    /** @type {Record<string, number>} */
    const out = {};
    for (const [name, file] of Object.entries(secretFiles)) {
      out[name] = JSON.parse(fs.readFileSync(String(file), "utf8")).generation;
    }
    return out;
  }

  /** @returns {Promise<{ schema: number, port: string } | undefined>} */
  async function database() {
    const url = process.env.STACKPIN_DATABASE_URL;
    if (!url) return undefined;
    const { Client } = require("pg");
    const client = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    await client.connect();
    try {
      const r = await client.query("select coalesce(max(schema), 0)::int as schema from stackpin_migrations");
      return { schema: r.rows[0].schema, port: new URL(url).port };
    } finally {
      await client.end();
    }
  }

  const server = http.createServer(async (req, res) => {
    const reply = (/** @type {number} */ status, /** @type {unknown} */ body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    try {
      if (req.url === "/health") {
        const problem = artifact.check?.(settings);
        if (problem) return reply(503, { status: "failing", version, release: artifact.release, error: problem });
        let db;
        try {
          db = await database();
        } catch (err) {
          return reply(503, { status: "failing", version, error: `database unreachable: ${/** @type {Error} */ (err).message}` });
        }
        return reply(200, {
          status: "ok",
          version,
          release: artifact.release,
          secretGenerations: secretGenerations(),
          database: db,
          uptimeMs: Date.now() - readySince,
        });
      }
      if (req.url === "/") return reply(200, { message: settings.message ?? "hello", version, release: artifact.release });
      return reply(404, { error: "not found" });
    } catch (err) {
      return reply(500, { error: String(/** @type {Error} */ (err).message) });
    }
  });
  serveManaged(server);
}

module.exports = { start };
