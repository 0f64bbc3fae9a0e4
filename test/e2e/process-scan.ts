import * as fs from "node:fs";

/** One running process's command line, as `ps` shows it to every user of the machine. */
export interface CommandLine {
  pid: number;
  argv: string[];
}

/** The command line of every process on the machine right now (those that ended meanwhile are skipped). */
export function commandLines(): CommandLine[] {
  const lines: CommandLine[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const raw = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (raw) lines.push({ pid: Number(entry), argv: raw.replace(/\0$/, "").split("\0") });
    } catch {
      // ended between the listing and the read
    }
  }
  return lines;
}
