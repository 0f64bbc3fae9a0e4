import { strict as assert } from "node:assert";
import { ApprovalRequiredError } from "../../lib/errors";
import { MockedStack, Step } from "./mock-cloud";

const INSTANCE = "aws:rds/instance:Instance";
const SNAPSHOT = "aws:rds/snapshot:Snapshot";
const TASK = "aws:ecs/taskDefinition:TaskDefinition";
const LISTENER = "aws:lb/listener:Listener";
const SECRET = "aws:secretsmanager/secret:Secret";

function container(step: Step, slot: string): { image: string; environment: Array<{ name: string; value: string }> } | undefined {
  const task = step.of(TASK)[`task-${slot}`];
  return task ? JSON.parse(task.inputs.containerDefinitions)[0] : undefined;
}
const env = (step: Step, slot: string, name: string) => container(step, slot)?.environment.find((e) => e.name === name)?.value;

describe("aws program under Pulumi's mocks: deploy v41 -> v42 (incompatible) -> rollback to v41", function () {
  let stack: MockedStack;
  let v41: Step;
  let v42: Step;
  let back: Step;
  let v43: Step;
  let again: Step;
  const restoreOf = (step: Step) => step.of(INSTANCE)[step.desired.database!.plan.live];

  before(async () => {
    stack = await MockedStack.create("aws");
    v41 = await stack.apply("deploy", "v41");
    v42 = await stack.apply("deploy", "v42");
    await assert.rejects(stack.apply("rollback", "v41"), ApprovalRequiredError);
    back = await stack.apply("rollback", "v41", { approveDataLoss: true });
    stack.writeVersion("v43", "version: v43\nconfig: { replicas: 3 }\nsecrets:\n  apiKey: { generation: 2 }\n");
    v43 = await stack.apply("deploy", "v43");
    again = await stack.apply("deploy", "v43", { restore: { snapshot: "pre-v42" }, approveDataLoss: true });
  });
  after(() => stack?.dispose());

  it("pins each colour's ECS task to its version's image tag, and the listener forwards to the active colour", () => {
    assert.equal(container(v41, "blue")?.image, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop:v41");
    assert.equal(v41.of(LISTENER).listener.inputs.defaultActions[0].targetGroupArn, "tg-blue-arn");
    assert.equal(container(v42, "green")?.image, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop:v42");
    assert.equal(v42.of(LISTENER).listener.inputs.defaultActions[0].targetGroupArn, "tg-green-arn");
    assert.equal(back.of(LISTENER).listener.inputs.defaultActions[0].targetGroupArn, "tg-blue-arn");
    assert.equal(container(back, "blue")?.image, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop:v41");
    assert.equal(container(back, "green"), undefined);
  });

  it("keeps automated backups, deletion protection and a final snapshot on the database", () => {
    const db = v41.of(INSTANCE).db.inputs;
    assert.equal(db.backupRetentionPeriod, 7);
    assert.equal(db.deletionProtection, true);
    assert.equal(db.skipFinalSnapshot, false);
    assert.equal(db.finalSnapshotIdentifier, "shop-prod-db-final");
  });

  it("retains the database on delete, and the subnet group it keeps using, so a destroy leaves both in the account", () => {
    assert.equal(v41.of(INSTANCE).db.retainOnDelete, true);
    assert.equal(v41.of("aws:rds/subnetGroup:SubnetGroup")["db-subnets"].retainOnDelete, true);
  });

  it("takes an RDS snapshot named after v42 before v42's tasks run against the new schema", () => {
    assert.deepEqual(v41.of(SNAPSHOT), {});
    const snap = v42.of(SNAPSHOT)["snapshot-pre-v42"];
    assert.equal(snap.inputs.dbInstanceIdentifier, "shop-prod-db");
    assert.equal(snap.inputs.dbSnapshotIdentifier, "shop-prod-pre-v42");
    assert.equal(env(v42, "green", "SCHEMA_SNAPSHOT"), "arn:aws:rds:eu-west-1:123456789012:snapshot:shop-prod-pre-v42");
    assert.equal(env(v42, "green", "SCHEMA_VERSION"), "2");
    assert.ok(v42.of(TASK)["task-green"].order > snap.order);
  });

  it("restores to a point in time into a new instance, from the primary at the pre-v42 snapshot's time, and points the app at it", () => {
    const restore = restoreOf(back).inputs;
    assert.deepEqual(restore.restoreToPointInTime, {
      sourceDbInstanceIdentifier: "shop-prod-db",
      restoreTime: v42.outputs.databaseSnapshots["pre-v42"].takenAt,
    });
    assert.equal(restore.deletionProtection, true);
    assert.equal(restore.skipFinalSnapshot, false);
    assert.equal(env(back, "blue", "DATABASE_HOST"), `${restore.identifier}.cluster.eu-west-1.rds.amazonaws.com`);
  });

  it("a version without a database section keeps the snapshot and the restored instance, both retained on delete", () => {
    const snap = v43.of(SNAPSHOT)["snapshot-pre-v42"];
    assert.equal(snap.retainOnDelete, true);
    assert.equal(snap.inputs.dbInstanceIdentifier, "shop-prod-db");
    const restored = restoreOf(back);
    assert.equal(v43.of(INSTANCE)[restored.name].retainOnDelete, true);
    assert.equal(env(v43, "green", "DATABASE_HOST"), `${restored.inputs.identifier}.cluster.eu-west-1.rds.amazonaws.com`);
  });

  it("a second restore is an instance of its own; the first stays declared", () => {
    const first = restoreOf(back);
    const second = restoreOf(again);
    assert.notEqual(second.name, first.name);
    assert.notEqual(second.inputs.identifier, first.inputs.identifier);
    assert.ok(again.of(INSTANCE)[first.name], "the first restored instance was dropped");
    assert.equal(again.outputs.database.host, `${second.inputs.identifier}.cluster.eu-west-1.rds.amazonaws.com`);
    assert.deepEqual(Object.keys(again.outputs.databaseInstances).sort(), ["primary", first.name, second.name].sort());
  });

  it("carries the secret generation in Secrets Manager, never lower after the rollback, with a rotation schedule", () => {
    const generation = (s: Step) => s.of(SECRET)["secret-apiKey"].inputs.tags["stackpin:generation"];
    assert.deepEqual([generation(v41), generation(v42), generation(back)], ["1", "2", "2"]);
    assert.ok(back.of("aws:secretsmanager/secretVersion:SecretVersion")["secret-apiKey-g2"]);
    const rotation = back.of("aws:secretsmanager/secretRotation:SecretRotation")["secret-apiKey-rotation"].inputs;
    assert.deepEqual(rotation.rotationRules, { automaticallyAfterDays: 30 });
  });
});
