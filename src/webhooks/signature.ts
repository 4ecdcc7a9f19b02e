/**
 * The Standard Webhooks signature scheme (standardwebhooks.com): a secret `whsec_<base64
 * of the key>`, and for each message the headers `webhook-id`, `webhook-timestamp` (Unix
 * seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`.
 * Receivers verify with any Standard Webhooks library, or these few lines.
 */
import { createHmac, randomBytes } from "node:crypto";

const PREFIX = "whsec_";

/** A new signing secret: 24 random bytes. */
export function newWebhookSecret(): string {
  return PREFIX + randomBytes(24).toString("base64");
}

/** The `webhook-signature` header value of a message. */
export function signWebhook(secret: string, messageId: string, timestampSec: number, body: string): string {
  const key = Buffer.from(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret, "base64");
  return "v1," + createHmac("sha256", key).update(`${messageId}.${timestampSec}.${body}`, "utf8").digest("base64");
}
