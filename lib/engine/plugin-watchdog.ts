/**
 * Loaded (`node --require`) into the dynamic provider plugin stackpin hands the engine, before the plugin's
 * own code: the plugin exits when the Pulumi CLI that started it is gone. Pulumi starts plugins in their
 * own process group, so a SIGKILL of the operation (a killed CI job, an OOM kill, kill -9 of the group)
 * would otherwise leave the plugin running — still holding whatever the program's resource was doing —
 * with nobody to stop it. And, the plugin being a process of stackpin's own, its start loads the Pulumi
 * SDK without the closure serializer it never calls (it runs providers, it does not serialize them).
 */
import { deferClosureSerializer } from "./closure-serializer";

deferClosureSerializer();

const parent = process.ppid;
const timer = setInterval(() => {
  // Re-parented (to init or a subreaper): the CLI that started this plugin has died.
  if (process.ppid !== parent) process.exit(1);
}, 250);
timer.unref();
