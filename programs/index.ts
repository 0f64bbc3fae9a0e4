import { localProgram } from "./local";
import type { ProgramFactory } from "./types";

export type { ProgramContext, ProgramFactory } from "./types";

/** The programs a stack can name in `stack.yaml` (`program: local`). */
export const builtinPrograms: Record<string, ProgramFactory> = {
  local: localProgram,
};
