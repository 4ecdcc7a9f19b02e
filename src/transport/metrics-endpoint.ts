/**
 * GET /metrics. The process's own registry is rendered at most once a second, however
 * many scrapers ask, and is always served — also while the database is down. With
 * K3_METRICS_AUTH=on the endpoint needs an admin token for every bucket (`*`) and then
 * adds that organization's job gauges (cached a few seconds); without it, no
 * organization's figures are shown at all.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Registry } from "prom-client";
import { allows } from "../domain/auth";
import { PermissionDenied } from "../domain/errors";
import type { Logger } from "../log";
import { renderOrgMetrics, type JobStatsSource } from "../metrics";
import type { Authenticator } from "./auth";
import { toConnectError } from "./errors";
import { headersOf, sendError } from "./rest";

const PROCESS_TTL_MS = 1000;
const ORG_TTL_MS = 5000;

/** Options of the metrics endpoint. */
export interface MetricsEndpointOptions {
  registry: Registry;
  log: Logger;
  /** When set, a token is required and the organization's job gauges are added. */
  auth?: Authenticator;
  stats?: JobStatsSource;
}

/** Creates the handler of GET /metrics. */
export function createMetricsEndpoint(opts: MetricsEndpointOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  let processText: { text: Promise<string>; at: number } | undefined;
  const orgText = new Map<string, { text: Promise<string>; at: number }>();
  const processMetrics = () => {
    if (!processText || Date.now() - processText.at > PROCESS_TTL_MS) {
      processText = { text: opts.registry.metrics(), at: Date.now() };
    }
    return processText.text;
  };
  const orgMetrics = (org: string) => {
    const stats = opts.stats;
    if (!stats) return Promise.resolve("");
    const hit = orgText.get(org);
    if (hit && Date.now() - hit.at < ORG_TTL_MS) return hit.text;
    if (orgText.size > 1000) orgText.clear();
    const text = renderOrgMetrics(stats, org).catch((err: unknown) => {
      opts.log.debug("organization metrics unavailable", { err: (err as Error).message });
      orgText.delete(org);
      return "";
    });
    orgText.set(org, { text, at: Date.now() });
    return text;
  };
  return async (req, res) => {
    let extra = "";
    if (opts.auth) {
      try {
        const caller = await opts.auth.authenticate(headersOf(req));
        if (!allows(caller, "*", "admin")) throw new PermissionDenied("/metrics needs a token with the admin role for every bucket (*)");
        extra = await orgMetrics(caller.org);
      } catch (err) {
        sendError(res, toConnectError(err, opts.log), err instanceof Error && /token/.test(err.message) ? { "www-authenticate": 'Bearer realm="k3-ingest"' } : {});
        return;
      }
    }
    const text = (await processMetrics()) + extra;
    res.writeHead(200, { "content-type": opts.registry.contentType });
    res.end(text);
  };
}
