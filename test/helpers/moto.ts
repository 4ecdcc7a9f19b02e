/** moto_server (the python3 on PATH has it): a real S3-compatible server on a free loopback port. */
import { spawn } from "node:child_process";
import { freePort } from "./processes";
import { waitFor } from "./wait";

export interface Moto {
  endpoint: string;
  /** Stops it and waits for it to exit: a child still exiting holds jest's worker past its teardown. */
  stop(): Promise<void>;
}

export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn("moto_server", ["-H", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
  await waitFor("moto_server to listen", async () => ((await fetch(endpoint).then((r) => r.status, () => 0)) > 0 ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
  return {
    endpoint,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once("exit", resolve).kill("SIGTERM"));
    },
  };
}
