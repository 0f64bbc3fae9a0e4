import * as z from "zod";

/** A container image tag, as registries accept it. */
export const imageTagSchema = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, "must be an image tag (letters, digits, _ . -; at most 128)");

/** Per-release settings the cloud programs read from a version's config (`replicas`, `imageTag`). */
export const releaseConfigShape = {
  /** Tasks or pods per colour (default 2). */
  replicas: z.number().int().min(0).max(1000).optional(),
  /** Pins the image tag instead of the version's name. */
  imageTag: imageTagSchema.optional(),
};
