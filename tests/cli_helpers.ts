/** Running the command line in-process for tests, capturing what it prints. */
import { main } from "../cli.ts";

/** Run `main` capturing what it prints: stdout (console.log) and stderr (console.error). */
export async function cli(
  argv: string[],
  cwd?: string,
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const [log, error] = [console.log, console.error];
  console.log = (...xs: unknown[]) => out.push(xs.join(" "));
  console.error = (...xs: unknown[]) => err.push(xs.join(" "));
  try {
    const code = await main(argv, cwd === undefined ? {} : { cwd });
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    [console.log, console.error] = [log, error];
  }
}

/** The deno binary to run: this one where allowed, else `deno` on PATH (same version, checked). */
export function denoCommand(): string {
  const exec = Deno.execPath();
  return Deno.permissions.querySync({ name: "run", command: exec }).state === "granted"
    ? exec
    : "deno";
}
