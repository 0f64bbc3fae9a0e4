// @ts-check
// The blue/green traffic switch: an HTTP proxy that sends each request to the upstream named in
// ROUTE_FILE, read per request, so a switch is one atomic file rename and takes effect at once.
"use strict";
const fs = require("node:fs");
const http = require("node:http");

const routeFile = /** @type {string} */ (process.env.ROUTE_FILE);

function upstream() {
  return new URL(JSON.parse(fs.readFileSync(routeFile, "utf8")).target);
}

const server = http.createServer((req, res) => {
  let target;
  try {
    target = upstream();
  } catch (err) {
    res.writeHead(503, { "content-type": "application/json" });
    return res.end(JSON.stringify({ error: `no route: ${/** @type {Error} */ (err).message}` }));
  }
  // No pooled connections: a drained upstream must not be reused.
  const proxied = http.request(
    { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent: false },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  proxied.on("error", (err) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: `upstream ${target.host}: ${err.message}` }));
  });
  req.pipe(proxied);
});
server.keepAliveTimeout = 1000;

server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  const address = /** @type {import("node:net").AddressInfo} */ (server.address());
  if (process.env.STACKPIN_READY_FILE) {
    fs.writeFileSync(process.env.STACKPIN_READY_FILE, JSON.stringify({ pid: process.pid, port: address.port }));
  }
});
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
