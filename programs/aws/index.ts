import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { normalizePlan, PRIMARY } from "../../lib/planning/database";
import { GeneratedSecret } from "../generated-secret";
import type { ProgramFactory } from "../types";
import { imageFor, readStackpinConfig, runningSlots } from "../stackpin-config";
import { awsTargetSchema } from "./schema";

/** The AWS target's settings: the `target` config key (project namespace); the region is `aws:region`. */
interface AwsSettings {
  app: string;
  /** ECR (or other) repository; the tag is the version (or a release's `imageTag`). */
  imageRepository: string;
  vpcId: string;
  /** Subnets for the load balancer, the tasks and the database (at least two zones). */
  subnetIds: string[];
  securityGroupIds: string[];
  containerPort?: number;
  cpu?: number;
  memory?: number;
  dbInstanceClass?: string;
  dbAllocatedStorage?: number;
  /** Days of automated backups, which point-in-time restore reads from (default 7). */
  backupRetentionDays?: number;
  /** The Lambda that rotates secrets on schedule (Secrets Manager rotation); without it, no schedule. */
  rotationLambdaArn?: string;
  rotationDays?: number;
}

/**
 * The AWS target, on ECS Fargate: a service per colour behind an Application Load Balancer whose
 * listener is the traffic switch, each pinned to its release's image tag; RDS PostgreSQL with automated
 * backups, a manual snapshot before an incompatible version and a point-in-time restore into a new
 * instance that the app is then pointed at; Secrets Manager secrets carrying the forward-only generation,
 * with a rotation schedule. Everything holding data has deletion protection and a final snapshot, and is
 * retained on delete.
 */
export const awsProgram: ProgramFactory = (context) => async () => {
  const sp = readStackpinConfig();
  // The same schema checked the version file before the engine ran; here it types what the program reads.
  const s: AwsSettings = awsTargetSchema.parse(new pulumi.Config().requireObject("target"));
  const port = s.containerPort ?? 8080;
  const name = (suffix: string) => `${s.app}-${context.stackName}-${suffix}`;

  const secrets = Object.entries(sp.secrets).map(([secretName, generation]) => {
    const value = new GeneratedSecret(`${secretName}-value`, { generation });
    const secret = new aws.secretsmanager.Secret(`secret-${secretName}`, {
      name: name(secretName),
      tags: { "stackpin:generation": String(generation) },
    });
    new aws.secretsmanager.SecretVersion(`secret-${secretName}-g${generation}`, { secretId: secret.id, secretString: value.value });
    if (s.rotationLambdaArn) {
      new aws.secretsmanager.SecretRotation(`secret-${secretName}-rotation`, {
        secretId: secret.id,
        rotationLambdaArn: s.rotationLambdaArn,
        rotationRules: { automaticallyAfterDays: s.rotationDays ?? 30 },
      });
    }
    return { secretName, secret };
  });

  const db = normalizePlan(sp.database);
  // Every database instance and snapshot holds data: removed from the stack (only by an approved
  // `snapshot rm` or `destroy --approve-data-loss`), it stays in the account. So does the subnet group
  // the instances left there still use (RDS refuses to delete it under them).
  const keep: pulumi.CustomResourceOptions = { retainOnDelete: true };
  const dbSubnets = new aws.rds.SubnetGroup("db-subnets", { subnetIds: s.subnetIds }, keep);
  const dbPassword = new GeneratedSecret("db-password", { generation: 1 });
  const dataSafety = (suffix: string) => ({
    deletionProtection: true,
    skipFinalSnapshot: false,
    finalSnapshotIdentifier: name(`${suffix}-final`),
  });
  const primary = new aws.rds.Instance("db", {
    identifier: name("db"),
    engine: "postgres",
    engineVersion: "15",
    instanceClass: s.dbInstanceClass ?? "db.t4g.micro",
    allocatedStorage: s.dbAllocatedStorage ?? 20,
    username: "app",
    password: dbPassword.value,
    dbSubnetGroupName: dbSubnets.name,
    vpcSecurityGroupIds: s.securityGroupIds,
    backupRetentionPeriod: s.backupRetentionDays ?? 7,
    ...dataSafety("db"),
  }, keep);
  // Snapshots and restored instances are declared from the stack's record.
  const identifierOf = (instance: string) => (instance === PRIMARY ? name("db") : name(`db-${instance.replace(/^restore-/, "r-")}`).slice(0, 63));
  const instances: Record<string, aws.rds.Instance> = { [PRIMARY]: primary };
  for (const r of (db?.restores ?? []).filter((x) => !x.removed)) {
    instances[r.name] = new aws.rds.Instance(
      r.name,
      {
        identifier: identifierOf(r.name),
        instanceClass: s.dbInstanceClass ?? "db.t4g.micro",
        dbSubnetGroupName: dbSubnets.name,
        vpcSecurityGroupIds: s.securityGroupIds,
        backupRetentionPeriod: s.backupRetentionDays ?? 7,
        // RDS restores from the automated backups of the instance that was live at that time.
        restoreToPointInTime: { sourceDbInstanceIdentifier: identifierOf(r.source), restoreTime: r.time },
        ...dataSafety(r.name),
      },
      { ...keep, dependsOn: instances[r.source] ? [instances[r.source]] : [] },
    );
  }
  const liveDb = instances[db?.live ?? PRIMARY] ?? primary;
  const snapshots = Object.fromEntries(
    (db?.snapshots ?? []).map((snap) => [
      snap.name,
      new aws.rds.Snapshot(
        `snapshot-${snap.name}`,
        {
          dbInstanceIdentifier: identifierOf(snap.source),
          dbSnapshotIdentifier: name(snap.name),
          tags: { "stackpin:version": snap.version, "stackpin:source": snap.source },
        },
        { ...keep, dependsOn: instances[snap.source] ? [instances[snap.source]] : [] },
      ),
    ]),
  );
  const liveRestore = db?.restores.find((r) => r.name === db.live);
  const dbHost = liveDb.address;
  // The app's schema step runs after the snapshot before it: its task names the snapshot.
  const taken = db?.takeSnapshot ? snapshots[db.takeSnapshot] : undefined;

  const lb = new aws.lb.LoadBalancer("lb", { name: name("lb").slice(0, 32), loadBalancerType: "application", subnets: s.subnetIds, securityGroups: s.securityGroupIds });
  const cluster = new aws.ecs.Cluster("cluster", { name: name("cluster") });
  const targetGroups = Object.fromEntries(
    (["blue", "green"] as const).map((slot) => [
      slot,
      new aws.lb.TargetGroup(`tg-${slot}`, {
        name: name(`tg-${slot}`).slice(0, 32),
        port,
        protocol: "HTTP",
        targetType: "ip",
        vpcId: s.vpcId,
        deregistrationDelay: 30,
        healthCheck: {
          path: sp.verify.health.path,
          interval: Math.max(5, Math.ceil(sp.verify.health.intervalMs / 1000)),
          timeout: Math.max(2, Math.ceil(sp.verify.health.timeoutMs / 1000)),
          unhealthyThreshold: Math.min(10, sp.verify.health.retries + 1),
          healthyThreshold: 2,
        },
      }),
    ]),
  );
  const services = Object.fromEntries(
    runningSlots(sp.rollout).map(([slot, release]) => {
      const task = new aws.ecs.TaskDefinition(`task-${slot}`, {
        family: name(slot),
        requiresCompatibilities: ["FARGATE"],
        networkMode: "awsvpc",
        cpu: String(s.cpu ?? 256),
        memory: String(s.memory ?? 512),
        containerDefinitions: pulumi
          .all([dbHost, taken?.dbSnapshotArn ?? "", ...secrets.map((x) => x.secret.arn)])
          .apply(([host, snapshotArn, ...arns]) =>
            JSON.stringify([
              {
                name: "app",
                image: imageFor(s.imageRepository, release),
                portMappings: [{ containerPort: port }],
                environment: [
                  { name: "STACKPIN_VERSION", value: release.version },
                  { name: "DATABASE_HOST", value: host },
                  { name: "SCHEMA_VERSION", value: String(db?.schema ?? "") },
                  { name: "SCHEMA_SNAPSHOT", value: snapshotArn },
                ],
                secrets: secrets.map((x, i) => ({ name: `SECRET_${x.secretName.toUpperCase()}`, valueFrom: arns[i] })),
              },
            ]),
          ),
      });
      const service = new aws.ecs.Service(`service-${slot}`, {
        name: name(slot),
        cluster: cluster.arn,
        launchType: "FARGATE",
        taskDefinition: task.arn,
        desiredCount: Number(release.config.replicas ?? 2),
        networkConfiguration: { subnets: s.subnetIds, securityGroups: s.securityGroupIds },
        loadBalancers: [{ targetGroupArn: targetGroups[slot].arn, containerName: "app", containerPort: port }],
        waitForSteadyState: true,
      });
      return [slot, { task, service }];
    }),
  );
  // The traffic switch: the listener forwards to the active colour once its service is steady.
  new aws.lb.Listener(
    "listener",
    { loadBalancerArn: lb.arn, port: 80, protocol: "HTTP", defaultActions: [{ type: "forward", targetGroupArn: targetGroups[sp.rollout.active].arn }] },
    { dependsOn: [services[sp.rollout.active].service] },
  );

  return {
    version: sp.version,
    activeSlot: sp.rollout.active,
    endpoint: pulumi.interpolate`http://${lb.dnsName}`,
    secretGenerations: sp.secrets,
    database: { host: dbHost, live: db?.live, restoredTo: liveRestore?.time, restoredFrom: liveRestore?.snapshot },
    databaseInstances: Object.fromEntries(
      Object.entries(instances).map(([n, i]) => {
        const r = db?.restores.find((x) => x.name === n);
        return [n, { identifier: i.identifier, ...(r ? { source: r.source, snapshot: r.snapshot, restoredTo: r.time, liveFrom: r.liveFrom } : {}) }];
      }),
    ),
    databaseSnapshots: Object.fromEntries(
      Object.entries(snapshots).map(([n, snap]) => [
        n,
        {
          version: db!.snapshots.find((x) => x.name === n)!.version,
          source: db!.snapshots.find((x) => x.name === n)!.source,
          takenAt: aws.rds.getSnapshotOutput({ dbSnapshotIdentifier: snap.dbSnapshotIdentifier }).snapshotCreateTime,
        },
      ]),
    ),
  };
};
