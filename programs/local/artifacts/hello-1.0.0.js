// Release 1.0.0 of the hello service.
require("./hello-service").start({ release: "1.0.0" });
