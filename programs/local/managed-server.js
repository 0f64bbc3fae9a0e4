// @ts-check
// How every process the local target starts listens and stops: on PORT (0 = any), telling the stack its
// pid and port through STACKPIN_READY_FILE, and draining on SIGTERM (no new connections, in-flight
// requests finish, then exit).
"use strict";
const fs = require("node:fs");

/** @param {import("node:http").Server} server */
function serveManaged(server) {
  server.keepAliveTimeout = 1000;
  server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
    const address = /** @type {import("node:net").AddressInfo} */ (server.address());
    if (process.env.STACKPIN_READY_FILE) {
      // Written under another name and renamed: the stack polls for the file and must never read it half-written.
      const ready = process.env.STACKPIN_READY_FILE;
      fs.writeFileSync(`${ready}.tmp`, JSON.stringify({ pid: process.pid, port: address.port }));
      fs.renameSync(`${ready}.tmp`, ready);
    }
  });
  process.on("SIGTERM", () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}

module.exports = { serveManaged };
