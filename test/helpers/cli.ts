/** Runs the `k3-ingest` command line as users do: its own process, from the sources. */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const ROOT = join(__dirname, "..", "..");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A runner of `k3-ingest ARGS`, with `env()` (read at each call: a token, an endpoint) over the test's environment; stdin is `input` when given. */
export function cliRunner(env: () => Record<string, string>) {
  return async (args: string[], extra: Record<string, string> = {}, input?: string): Promise<CliResult> => {
    const child = run(process.execPath, ["-r", join(ROOT, "test/helpers/ts-register.cjs"), join(ROOT, "src/main.ts"), ...args], {
      env: { ...process.env, ...env(), ...extra },
      timeout: 30_000,
      maxBuffer: 64 * 2 ** 20,
    });
    child.child.stdin?.end(input ?? "");
    try {
      const r = await child;
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, stdout: x.stdout, stderr: x.stderr };
    }
  };
}
