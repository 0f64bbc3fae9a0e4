// Release 1.2.0 of the hello service: adds /checkout, which waits on a payment backend that this release
// calls wrongly, so every checkout fails with 500 after the backend's timeout. Health and / are fine,
// so it passes its health gate and verification: the broken release only production traffic reveals
// (the scripted incident deploys it and lets the triggers catch it).
require("./hello-service").start({
  release: "1.2.0",
  routes: {
    "/checkout": async () => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return { status: 500, body: { error: "payment backend: 400 Bad Request (unknown field currencyCode)" } };
    },
  },
});
