import * as z from "zod";
import { releaseConfigShape } from "../release-config";
import type { ProgramConfigSpec } from "../types";

// Resource names are `<app>-<stack>-<suffix>`; RDS identifiers take lowercase letters, digits and hyphens.
const appName = z.string().regex(/^[a-z][a-z0-9-]{0,19}$/, "must be lowercase letters, digits and -, starting with a letter, at most 20");

/** The AWS target's settings, the `target` config key (see `programs/aws/index.ts`). */
export const awsTargetSchema = z
  .object({
    app: appName,
    imageRepository: z.string().min(1),
    vpcId: z.string().regex(/^vpc-[0-9a-z]+$/, "must be a VPC id (vpc-...)"),
    subnetIds: z.array(z.string().regex(/^subnet-[0-9a-z]+$/, "must be a subnet id (subnet-...)")).min(2),
    securityGroupIds: z.array(z.string().regex(/^sg-[0-9a-z]+$/, "must be a security group id (sg-...)")).min(1),
    containerPort: z.number().int().min(1).max(65_535).optional(),
    cpu: z.number().int().positive().optional(),
    memory: z.number().int().positive().optional(),
    dbInstanceClass: z.string().regex(/^db\.[a-z0-9]+\.[a-z0-9]+$/, "must be an instance class like db.t4g.micro").optional(),
    dbAllocatedStorage: z.number().int().min(20).max(65_536).optional(),
    backupRetentionDays: z.number().int().min(1).max(35).optional(),
    rotationLambdaArn: z.string().startsWith("arn:aws").optional(),
    rotationDays: z.number().int().min(1).max(1000).optional(),
  })
  .strict();

/** The AWS program's config (project namespace): `target`, and per release `replicas`, `imageTag`. */
export const awsConfigSchema = z.object({ target: awsTargetSchema, ...releaseConfigShape }).strict();

/** The AWS target's config declaration; `aws:*` (e.g. `aws:region`) belongs to its provider. */
export const awsConfig: ProgramConfigSpec = { schema: awsConfigSchema, providerNamespaces: ["aws"] };
