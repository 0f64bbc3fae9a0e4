// Release 1.1.0 of the hello service: same behaviour, new release (the beta flag is read from settings).
require("./hello-service").start({ release: "1.1.0" });
