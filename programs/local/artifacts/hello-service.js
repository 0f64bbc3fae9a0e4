// @ts-check
// The local target's service: one HTTP server per release, started by the stack from a versioned
// artifact (hello-<release>.js). Settings arrive as JSON in STACKPIN_SETTINGS; generated secrets as
// files named in STACKPIN_SECRET_FILES, re-read on use so a rotation needs no restart. It exposes
// Prometheus metrics on /metrics, labelled with its version and slot (STACKPIN_SLOT).
"use strict";
const fs = require("node:fs");
const http = require("node:http");
const promClient = require("prom-client");
const { serveManaged } = require("../managed-server");

/**
 * @typedef {(req: import("node:http").IncomingMessage) => Promise<{ status: number, body: unknown }>} Route
 */

/**
 * The service's metrics: requests by route and status code, their latency, and the process's memory
 * (prom-client's default process metrics), every series labelled with the version and slot it serves.
 * @param {{ version: string, slot: string, release: string, routes: string[] }} labels
 */
function serviceMetrics({ version, slot, release, routes }) {
  const register = new promClient.Registry();
  register.setDefaultLabels({ version, slot, release });
  promClient.collectDefaultMetrics({ register });
  const requests = new promClient.Counter({
    name: "http_requests_total",
    help: "HTTP requests served, by route and status code",
    labelNames: ["route", "code"],
    registers: [register],
  });
  const duration = new promClient.Histogram({
    name: "http_request_duration_seconds",
    help: "Time from a request's arrival to the end of its response, by route",
    labelNames: ["route"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [register],
  });
  // Every series exists from the first scrape at 0: a counter that first appears at N hides its first N
  // increments from rate(), and an error rate would miss a release's first failures.
  for (const route of routes) {
    for (const code of ["200", "500", "503"]) requests.inc({ route, code }, 0);
    duration.zero({ route });
  }
  return { register, requests, duration };
}

/**
 * Starts the service.
 * @param {{ release: string, check?: (settings: Record<string, unknown>) => string | undefined, routes?: Record<string, Route> }} artifact
 *   `check` returns a reason when the release cannot serve with these settings (its health then fails);
 *   `routes` are the release's own paths beside `/health` and `/`.
 */
function start(artifact) {
  const version = process.env.STACKPIN_VERSION ?? "unknown";
  const extraRoutes = artifact.routes ?? {};
  const metrics = serviceMetrics({
    version,
    slot: process.env.STACKPIN_SLOT ?? "none",
    release: artifact.release,
    routes: ["/health", "/", ...Object.keys(extraRoutes), "other"],
  });
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
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      res.writeHead(200, { "content-type": metrics.register.contentType });
      return res.end(await metrics.register.metrics());
    }
    const route = path === "/health" || path === "/" || path in extraRoutes ? path : "other";
    const stopTimer = metrics.duration.startTimer({ route });
    res.on("finish", () => {
      stopTimer();
      metrics.requests.inc({ route, code: String(res.statusCode) });
    });
    const reply = (/** @type {number} */ status, /** @type {unknown} */ body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    try {
      if (path === "/health") {
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
      if (path === "/") return reply(200, { message: settings.message ?? "hello", version, release: artifact.release });
      const own = extraRoutes[path];
      if (own) {
        const r = await own(req);
        return reply(r.status, r.body);
      }
      return reply(404, { error: "not found" });
    } catch (err) {
      return reply(500, { error: String(/** @type {Error} */ (err).message) });
    }
  });
  serveManaged(server);
}

module.exports = { start };
