// @ts-check
// The blue/green traffic switch: an HTTP proxy that sends each request to the upstream named in
// ROUTE_FILE, read per request, so a switch is one atomic file rename and takes effect at once.
"use strict";
const fs = require("node:fs");
const http = require("node:http");
const { serveManaged } = require("./managed-server");

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
serveManaged(server);
