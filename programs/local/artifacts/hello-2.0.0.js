// Release 2.0.0 of the hello service. It needs a cache, and its health check fails without one: the
// broken release the demo deploys (its version file does not configure `cacheUrl`).
require("./hello-service").start({
  release: "2.0.0",
  check: (settings) => (settings.cacheUrl ? undefined : "cache unreachable: no cacheUrl configured"),
});
