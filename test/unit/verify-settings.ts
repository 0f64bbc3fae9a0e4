import { VerifySettings, verifySchema } from "../../lib/versions/schema";

/** Verification settings as a version file would give them, defaults filled in by the real schema. */
export function verifyFileSchema(input: unknown): VerifySettings {
  return verifySchema.parse(input);
}
