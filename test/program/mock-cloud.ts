import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { UpdateSummary } from "@pulumi/pulumi/automation";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { openEnvironment } from "../../lib";
import type { EnvironmentContext } from "../../lib/environment";
import { encodeRecord, HistoryEntry, liveState, toHistoryEntries } from "../../lib/records/history-record";
import { DatabaseOptions, desiredState, DesiredState } from "../../lib/operations/apply";
import type { StackOutput } from "../../lib/engine/stack";

// Internal to @pulumi/pulumi (not in its typings), but it is the event we need: every registration answered.
const { waitForRPCs } = require("@pulumi/pulumi/runtime/settings") as { waitForRPCs(): Promise<void> };

/** A resource the program declared, with its inputs as the provider would receive them. */
export interface Declared {
  type: string;
  name: string;
  inputs: Record<string, any>;
  /** Registration order: a resource whose inputs use another's outputs registers after it. */
  order: number;
  /** The resource options that keep data: the engine leaves a `retainOnDelete` resource in the cloud. */
  retainOnDelete?: boolean;
  protect?: boolean;
}

/**
 * Pulumi's mocks standing in for the cloud (the provider plugins cannot be had here): every resource
 * gets an id and echoes its inputs, plus the few outputs a real provider computes that the programs read.
 */
class CloudMocks implements pulumi.runtime.Mocks {
  declared: Declared[] = [];
  /** Options seen by a stack transformation, by `type::name` (the mocks themselves do not get them). */
  options = new Map<string, { retainOnDelete?: boolean; protect?: boolean }>();
  snapshotTimes: Record<string, string> = {};
  constructor(private readonly clock: () => Date) {}

  newResource(args: pulumi.runtime.MockResourceArgs): { id: string; state: Record<string, any> } {
    this.declared.push({ type: args.type, name: args.name, inputs: args.inputs, order: this.declared.length, ...this.options.get(`${args.type}::${args.name}`) });
    const state: Record<string, any> = { ...args.inputs };
    switch (args.type) {
      case "random:index/randomPassword:RandomPassword":
        // A real RandomPassword keeps its value until its keepers change.
        state.result = `pw-${args.name}-${JSON.stringify(args.inputs.keepers ?? {})}`;
        break;
      case "aws:rds/instance:Instance":
        state.address = `${args.inputs.identifier}.cluster.eu-west-1.rds.amazonaws.com`;
        break;
      case "aws:rds/snapshot:Snapshot":
        state.dbSnapshotArn = `arn:aws:rds:eu-west-1:123456789012:snapshot:${args.inputs.dbSnapshotIdentifier}`;
        this.snapshotTimes[args.inputs.dbSnapshotIdentifier] ??= this.clock().toISOString();
        break;
      case "aws:lb/loadBalancer:LoadBalancer":
        state.dnsName = `${args.inputs.name}.elb.amazonaws.com`;
        break;
      case "pulumi-nodejs:dynamic/stackpin:GeneratedSecret":
        // A real one's provider generates the value at create, once per generation.
        state.value = `generated-${args.name}-${args.inputs.generation}`;
        break;
      case "kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshot":
        state.metadata = { ...args.inputs.metadata, creationTimestamp: (this.snapshotTimes[args.inputs.metadata.name] ??= this.clock().toISOString()) };
        break;
    }
    for (const key of ["arn", "name"]) state[key] ??= `${args.name}-${key}`;
    return { id: `${args.name}-id`, state };
  }

  call(args: pulumi.runtime.MockCallArgs): Record<string, any> {
    if (args.token === "aws:rds/getSnapshot:getSnapshot") {
      return { ...args.inputs, snapshotCreateTime: this.snapshotTimes[args.inputs.dbSnapshotIdentifier] };
    }
    return args.inputs;
  }
}

/** One apply of a version, run through stackpin's own planning and the program under Pulumi's mocks. */
export interface Step {
  desired: DesiredState;
  resources: Declared[];
  outputs: Record<string, any>;
  /** The declared resources of a type, by name. */
  of(type: string): Record<string, Declared>;
}

/**
 * A stack of `program` whose applies go through stackpin's planning (`desiredState`, history, the
 * database and secret policies) exactly as the CLI's do, with the program run under `setMocks` instead
 * of the engine. History is kept the way the backend records it: the config of each update.
 */
export class MockedStack {
  private updates: UpdateSummary[] = [];
  private outputs: Record<string, StackOutput> = {};
  private readonly mocks: CloudMocks;
  private now = new Date("2026-11-24T03:00:00Z");

  private constructor(readonly ctx: EnvironmentContext) {
    this.mocks = new CloudMocks(() => this.now);
  }

  /** A temp project with the cloud fixture's versions and `<program>.stack.yaml` as stack `prod`. */
  static async create(program: "aws" | "kubernetes"): Promise<MockedStack> {
    const fixtures = path.join(packageRoot(), "test", "fixtures", "cloud");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `stackpin-${program}-`));
    const stackDir = path.join(dir, "stacks", "prod");
    fs.cpSync(path.join(fixtures, "versions"), stackDir, { recursive: true });
    fs.copyFileSync(path.join(fixtures, `${program}.stack.yaml`), path.join(stackDir, "stack.yaml"));
    return new MockedStack(await openEnvironment({ stack: "prod", projectDir: dir, passphrase: { value: "unused" }, actor: "test" }));
  }

  /** Removes the temp project. */
  dispose(): void {
    fs.rmSync(this.ctx.projectDir, { recursive: true, force: true });
  }

  history(): HistoryEntry[] {
    return toHistoryEntries(this.updates);
  }

  /** Writes a version file into the stack, as a user would add one. */
  writeVersion(name: string, text: string): void {
    fs.writeFileSync(path.join(this.ctx.stack.dir, `${name}.yaml`), text);
    this.ctx.stack.versions.push(name);
  }

  /** Applies a version: plans with stackpin, runs the program under mocks, records the update. */
  async apply(op: "deploy" | "rollback", version: string, dbOptions: DatabaseOptions = {}): Promise<Step> {
    this.now = new Date(this.now.getTime() + 3_600_000);
    const history = this.history();
    const target = this.ctx.store.version(this.ctx.stack, version);
    const desired = desiredState(this.ctx, op, target, history, this.outputs, dbOptions);
    const config = Object.fromEntries(
      Object.entries(desired.config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
    );
    this.mocks.declared = [];
    await pulumi.runtime.setMocks(this.mocks, this.ctx.stack.project, "prod", false);
    pulumi.runtime.setAllConfig(config);
    const program = this.ctx.program({ stackName: "prod", stateDir: this.ctx.stateDir });
    const outputs =
      (await pulumi.runtime.runInPulumiStack(async () => {
        pulumi.runtime.registerStackTransformation((a) => {
          this.mocks.options.set(`${a.type}::${a.name}`, { retainOnDelete: a.opts.retainOnDelete, protect: a.opts.protect });
          return undefined;
        });
        return program();
      })) ?? {};
    // Resources no output depends on may still be registering: wait for the runtime's RPC queue to drain.
    await waitForRPCs();
    this.outputs = Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, { value: v, secret: false }]));
    this.updates.unshift({
      version: this.updates.length + 1,
      kind: "update",
      startTime: this.now,
      endTime: this.now,
      message: encodeRecord({ op, from: liveState(history).version, to: version, who: "test" }),
      environment: {},
      config: Object.fromEntries(Object.entries(config).map(([k, v]) => [k, { value: v, secret: false }])),
      result: "succeeded",
      resourceChanges: {},
    });
    const resources = [...this.mocks.declared];
    return {
      desired,
      resources,
      outputs,
      of: (type) => Object.fromEntries(resources.filter((r) => r.type === type).map((r) => [r.name, r])),
    };
  }
}
