/**
 * Webhook subscriptions of a bucket (IngestService CreateWebhook, ListWebhooks,
 * DeleteWebhook, ListWebhookDeliveries). Delivery itself is webhooks/delivery.ts.
 */
import type { HandlerContext } from "@connectrpc/connect";
import type {
  CreateWebhookRequest,
  DeleteWebhookRequest,
  ListWebhookDeliveriesRequest,
  ListWebhooksRequest,
  Webhook,
} from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { FailedPrecondition, InvalidArgument, NotFound, Unimplemented } from "../domain/errors";
import { newId } from "../domain/ids";
import { decodePageToken, encodePageToken } from "../domain/page-token";
import { checkBucket, checkLength, checkRequired, MAX_TEXT, quote } from "../domain/validate";
import type { WebhookRow } from "../storage/postgres/event-store";
import { newWebhookSecret } from "../webhooks/signature";
import { scopeOf } from "./caller";
import { ingestPagination } from "./convert";
import type { ServiceDeps } from "./deps";

/** The event types a subscription may ask for; the terminal ones are the default. */
export const WEBHOOK_EVENTS = ["ingest.job.completed", "ingest.job.failed", "ingest.job.partial", "ingest.job.cancelled", "ingest.job.changed"] as const;
const TERMINAL_EVENTS = WEBHOOK_EVENTS.slice(0, 4);
/** Subscriptions per bucket, at most. */
export const MAX_WEBHOOKS = 10;

const toMessage = (w: WebhookRow, secret = ""): Omit<Webhook, "$typeName"> => ({
  webhookId: w.webhookId,
  bucket: w.bucket,
  url: w.url,
  events: w.events,
  description: w.description,
  createdAt: BigInt(w.createdAt),
  secret,
});

export function createWebhookMethods(deps: ServiceDeps) {
  const { repo, now } = deps;
  const policy = () => {
    if (!deps.webhooks || !deps.secrets) throw new Unimplemented("webhooks are not served by this process");
    return { policy: deps.webhooks, secrets: deps.secrets };
  };

  async function subscriptionOf(req: { bucket: string; webhookId: string }, ctx: HandlerContext): Promise<WebhookRow> {
    checkRequired(req.webhookId, "webhook_id");
    const scope = scopeOf(ctx, req.bucket);
    const found = (await repo.events.webhookList(scope)).find((w) => w.webhookId === req.webhookId);
    if (!found) throw new NotFound(`webhook_id ${quote(req.webhookId)} not found in bucket ${quote(req.bucket)}`);
    return found;
  }

  return {
    async createWebhook(req: CreateWebhookRequest, ctx: HandlerContext) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const { policy: p, secrets } = policy();
      checkRequired(req.url, "url");
      p.checkUrl(req.url, "url");
      checkLength(req.description, MAX_TEXT, "description");
      const events = req.events.length ? [...new Set(req.events)] : [...TERMINAL_EVENTS];
      events.forEach((e, i) => {
        if (!(WEBHOOK_EVENTS as readonly string[]).includes(e)) {
          throw new InvalidArgument(`events[${i}] ${quote(e)} is not an event type; pass any of ${WEBHOOK_EVENTS.join(", ")}`, `events[${i}]`);
        }
      });
      if ((await repo.events.webhookCount(scope)) >= MAX_WEBHOOKS) {
        throw new FailedPrecondition(`bucket ${quote(req.bucket)} already has ${MAX_WEBHOOKS} webhooks, the most allowed; delete one first`);
      }
      const createdAt = now();
      const secret = newWebhookSecret();
      const row: WebhookRow = { webhookId: newId("wh", createdAt), org: scope.org, bucket: req.bucket, url: req.url, events, description: req.description, createdAt, secret: secrets.seal(secret) };
      await repo.events.webhookInsert(row);
      return { webhook: toMessage(row, secret) };
    },

    async listWebhooks(req: ListWebhooksRequest, ctx: HandlerContext) {
      checkBucket(req.bucket);
      return { webhooks: (await repo.events.webhookList(scopeOf(ctx, req.bucket))).map((w) => toMessage(w)) };
    },

    async deleteWebhook(req: DeleteWebhookRequest, ctx: HandlerContext) {
      checkBucket(req.bucket);
      checkRequired(req.webhookId, "webhook_id");
      if (!(await repo.events.webhookDelete(scopeOf(ctx, req.bucket), req.webhookId))) {
        throw new NotFound(`webhook_id ${quote(req.webhookId)} not found in bucket ${quote(req.bucket)}`);
      }
      return {};
    },

    async listWebhookDeliveries(req: ListWebhookDeliveriesRequest, ctx: HandlerContext) {
      checkBucket(req.bucket);
      const hook = await subscriptionOf(req, ctx);
      if (req.pageSize < 0 || req.pageSize > 1000) throw new InvalidArgument(`page_size ${req.pageSize} is out of range; pass 0 (50) to 1000`, "page_size");
      const limit = req.pageSize || 50;
      const filter = { webhookId: hook.webhookId };
      const before = decodePageToken(req.pageToken, filter)?.id ?? "0";
      if (!/^\d+$/.test(before)) throw new InvalidArgument(`page_token ${quote(req.pageToken)} is not a page token of this listing`, "page_token");
      const page = await repo.events.deliveries(scopeOf(ctx, req.bucket), hook.webhookId, Number(before), limit + 1);
      const items = page.items.slice(0, limit);
      const last = items[items.length - 1];
      const next = page.items.length > limit && last ? encodePageToken({ createdAt: last.createdAt, id: String(last.deliveryId) }, filter) : "";
      return {
        deliveries: items.map((d) => ({
          messageId: `msg_${d.deliveryId}`,
          eventType: d.eventType,
          jobId: d.jobId,
          state: d.state,
          attempts: d.attempts,
          createdAt: BigInt(d.createdAt),
          nextAttemptAt: BigInt(d.state === "pending" ? d.nextAt : 0),
          deliveredAt: BigInt(d.deliveredAt),
          attemptLog: d.log.map((a) => ({ at: BigInt(a.at), statusCode: a.statusCode, error: a.error, durationMs: a.durationMs })),
        })),
        pagination: ingestPagination(next, page.total),
      };
    },
  };
}
