/**
 * A dedicated connection that LISTENs for job notifications and reconnects with backoff
 * when it drops. Notifications are only a shortcut: the worker polls as well, so a lost
 * notification delays a job by at most one poll interval. After every (re)connect the
 * listener reports a wake-up, since notifications sent while it was away are gone.
 */
import { Client } from "pg";
import type { Logger } from "../../log";

/** A running listener. */
export interface Listener {
  stop(): Promise<void>;
}

/** Starts listening on `channels`; `onNotify` receives (channel, payload). */
export function startListener(opts: {
  connectionString: string;
  channels: readonly string[];
  onNotify: (channel: string, payload: string) => void;
  onReconnect: () => void;
  log: Logger;
}): Listener {
  let client: Client | undefined;
  let stopped = false;
  let retryMs = 100;
  let timer: NodeJS.Timeout | undefined;

  const connect = async () => {
    if (stopped) return;
    const c = new Client({ connectionString: opts.connectionString, application_name: "k3-ingest-listener" });
    c.on("notification", (n) => opts.onNotify(n.channel, n.payload ?? ""));
    c.on("error", (err) => {
      opts.log.warn("job listener connection failed; reconnecting", { err: err.message });
      drop(c);
    });
    c.on("end", () => drop(c));
    try {
      await c.connect();
      for (const ch of opts.channels) await c.query(`LISTEN ${ch}`);
    } catch (err) {
      opts.log.debug("job listener could not connect", { err: (err as Error).message });
      drop(c);
      return;
    }
    if (stopped) {
      await c.end().catch(() => undefined);
      return;
    }
    client = c;
    retryMs = 100;
    opts.onReconnect();
  };

  const drop = (c: Client) => {
    if (client === c) client = undefined;
    c.removeAllListeners("end");
    c.end().catch(() => undefined);
    if (stopped || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  };

  void connect();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      const c = client;
      client = undefined;
      if (c) {
        c.removeAllListeners("end");
        await c.end().catch(() => undefined);
      }
    },
  };
}
