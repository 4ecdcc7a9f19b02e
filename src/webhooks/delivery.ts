/**
 * Delivers the webhook outbox. Deliveries are written by the job-event triggers in the
 * transaction of the change they report (migration 015), so a crash loses none; this loop
 * claims due ones with a lease (FOR UPDATE SKIP LOCKED: with several instances each is
 * POSTed by one), signs and POSTs each, and records the attempt: delivered on a 2xx,
 * otherwise due again after a backoff (the Standard Webhooks schedule: 5 s, 5 min, 30 min,
 * 2 h, 5 h, 10 h, 10 h from K3_WEBHOOK_RETRY_BASE_MS = 5 s) until K3_WEBHOOK_MAX_ATTEMPTS.
 * A process killed mid-POST leaves the lease to expire: the delivery is POSTed again (at
 * least once; receivers deduplicate on webhook-id). It runs on the API's pool and never
 * on the job path.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { LookupFunction } from "node:net";
import { toJsonString } from "@bufbuild/protobuf";
import { IngestJobSchema } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import type { Logger } from "../log";
import { jobToProto } from "../service/convert";
import type { ClaimedDelivery, EventStore } from "../storage/postgres/event-store";
import type { SecretBox } from "../storage/secrets";
import { signWebhook } from "./signature";
import { guardedLookup, type UrlPolicy } from "../domain/url-policy";

/** Multiples of the base delay between attempts (with a 5 s base: the Standard Webhooks schedule). */
const BACKOFF = [1, 60, 360, 1440, 3600, 7200, 7200];
const BATCH = 16;
const IDLE_POLL_MS = 5_000;

export interface DeliveryConfig {
  retryBaseMs: number;
  maxAttempts: number;
  timeoutMs: number;
}

/** The JSON body of a delivery: the Standard Webhooks envelope around the job. */
export function webhookBody(d: Pick<ClaimedDelivery, "eventType" | "eventSeq" | "job"> & { outputCurrent: boolean }, at: number): string {
  const job = toJsonString(IngestJobSchema, jobToProto(d.job, d.outputCurrent), { alwaysEmitImplicit: true });
  return `{"type":${JSON.stringify(d.eventType)},"timestamp":${JSON.stringify(new Date(at).toISOString())},"data":{"eventId":"${d.eventSeq}","job":${job}}}`;
}

export class WebhookDeliverer {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = false;
  private readonly inFlight = new Set<Promise<void>>();
  /** The pass running, which stop() waits for (it may be reading the database). */
  private passing?: Promise<void>;

  constructor(
    private readonly deps: { store: EventStore; secrets: SecretBox; policy: UrlPolicy; log: Logger; now: () => number },
    private readonly config: DeliveryConfig,
  ) {}

  start(): void {
    this.kick();
  }

  /** Something may be due (a NOTIFY from the event triggers, or a timer). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.passing = this.pass().finally(() => {
      this.running = false;
      if (this.again && !this.stopped) {
        this.again = false;
        this.kick();
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.passing;
    await Promise.all(this.inFlight);
  }

  private async pass(): Promise<void> {
    const { store, log, now } = this.deps;
    try {
      for (;;) {
        const due = await store.claimDeliveries(now(), BATCH, this.config.timeoutMs + 5_000);
        if (due.length === 0) break;
        await Promise.all(due.map((d) => this.track(this.deliver(d))));
        if (this.stopped) return;
      }
      const next = await store.nextDeliveryAt();
      this.schedule(next === undefined ? IDLE_POLL_MS : Math.min(IDLE_POLL_MS, Math.max(0, next - now())));
    } catch (err) {
      log.warn("webhook delivery pass failed; retrying", { err: (err as Error).message });
      this.schedule(1_000);
    }
  }

  private track(p: Promise<void>): Promise<void> {
    this.inFlight.add(p);
    return p.finally(() => this.inFlight.delete(p));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), ms);
    this.timer.unref();
  }

  private async deliver(d: ClaimedDelivery): Promise<void> {
    const { store, secrets, log, now } = this.deps;
    const started = now();
    let statusCode = 0;
    let error = "";
    try {
      const secret = secrets.open(d.secret);
      const body = webhookBody(d, d.createdAt);
      const messageId = `msg_${d.deliveryId}`;
      const timestamp = Math.floor(started / 1000);
      statusCode = await this.post(d.url, body, {
        "content-type": "application/json",
        "user-agent": "k3-ingest-webhooks",
        "webhook-id": messageId,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": signWebhook(secret, messageId, timestamp, body),
      });
      if (statusCode < 200 || statusCode > 299) error = `the receiver answered HTTP ${statusCode}`;
    } catch (err) {
      error = (err as Error).message;
    }
    const ok = error === "";
    const gaveUp = !ok && d.attempts >= this.config.maxAttempts;
    const delay = this.config.retryBaseMs * BACKOFF[Math.min(d.attempts - 1, BACKOFF.length - 1)];
    await store
      .deliveryAttempted({
        deliveryId: d.deliveryId,
        attempts: d.attempts,
        at: started,
        statusCode,
        error,
        durationMs: now() - started,
        state: ok ? "delivered" : gaveUp ? "failed" : "pending",
        nextAt: ok || gaveUp ? 0 : now() + delay,
      })
      .catch((err: unknown) => log.warn("recording a webhook attempt failed", { err: (err as Error).message }));
    if (!ok) log[gaveUp ? "warn" : "info"](gaveUp ? "webhook delivery failed for good" : "webhook delivery failed; will retry", { webhook: d.webhookId, delivery: d.deliveryId, attempt: d.attempts, error });
  }

  /** POSTs `body`, connecting only to an address the policy accepts; resolves with the status code. */
  private post(raw: string, body: string, headers: Record<string, string>): Promise<number> {
    const url = new URL(raw);
    let lookup: LookupFunction;
    try {
      lookup = guardedLookup(url, this.deps.policy);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, { method: "POST", headers: { ...headers, "content-length": String(Buffer.byteLength(body)) }, lookup, timeout: this.config.timeoutMs }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`the receiver did not answer within ${this.config.timeoutMs} ms`)));
      req.on("error", reject);
      req.end(body);
    });
  }
}
