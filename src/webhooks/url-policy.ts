/**
 * Where webhooks may go. A URL is http(s) without credentials; when K3_WEBHOOK_ALLOW is
 * set (comma-separated `host`, `host:port` or `*.domain`) its host must match an entry.
 * Loopback, unspecified and link-local addresses (the server itself, cloud metadata) are
 * refused unless an entry names that host exactly — checked when the subscription is
 * created, and again on every delivery against the address the name resolves to then, so
 * a name that later resolves to 127.0.0.1 (DNS rebinding) is refused too.
 */
import { isIP } from "node:net";
import { InvalidArgument } from "../domain/errors";
import { quote } from "../domain/validate";

export interface WebhookPolicy {
  /** Checks a subscription URL; throws InvalidArgument naming what is wrong. */
  checkUrl(raw: string, field: string): URL;
  /** Why delivering to `host` (as in the URL) at the resolved `address` is refused, or undefined. */
  refuseAddress(url: URL, address: string): string | undefined;
}

/** Loopback, unspecified or link-local: addresses that reach this machine or its platform. */
export function isInternalAddress(address: string): boolean {
  const a = address.toLowerCase().replace(/^\[|\]$/g, "");
  const v4 = a.startsWith("::ffff:") && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
  if (isIP(v4) === 4) {
    const [x, y] = v4.split(".").map(Number);
    return x === 127 || x === 0 || (x === 169 && y === 254);
  }
  if (isIP(a) === 6) return a === "::1" || a === "::" || /^fe[89ab]/.test(a);
  return false;
}

const isLocalName = (host: string) => host === "localhost" || host.endsWith(".localhost");

export function createWebhookPolicy(allow: readonly string[]): WebhookPolicy {
  const entries = allow.map((e) => e.toLowerCase());
  const hostOf = (u: URL) => u.hostname.toLowerCase().replace(/^\[|\]$/g, "");
  const portOf = (u: URL) => u.port || (u.protocol === "https:" ? "443" : "80");
  /** The entry naming this URL's host exactly (with or without its port). */
  const exact = (u: URL) => entries.some((e) => e === hostOf(u) || e === `${hostOf(u)}:${portOf(u)}` || e === `[${hostOf(u)}]:${portOf(u)}`);
  const listed = (u: URL) => exact(u) || entries.some((e) => e.startsWith("*.") && hostOf(u).endsWith(e.slice(1)));
  return {
    checkUrl(raw, field) {
      let u: URL;
      try {
        u = new URL(raw);
      } catch {
        throw new InvalidArgument(`${field} ${quote(raw)} is not a URL; pass an absolute http:// or https:// URL`, field);
      }
      if (raw.length > 2048) throw new InvalidArgument(`${field} is ${raw.length} characters long; at most 2048 are allowed`, field);
      if (u.protocol !== "http:" && u.protocol !== "https:") {
        throw new InvalidArgument(`${field} ${quote(raw)} has the scheme ${quote(u.protocol.slice(0, -1))}; webhooks are delivered over http or https`, field);
      }
      if (u.username || u.password) throw new InvalidArgument(`${field} must not carry credentials; receivers verify the webhook-signature header instead`, field);
      if (entries.length > 0 && !listed(u)) {
        throw new InvalidArgument(`${field} host ${quote(u.host)} is not in this server's webhook allow-list (K3_WEBHOOK_ALLOW: ${entries.join(", ")})`, field);
      }
      if ((isLocalName(hostOf(u)) || isInternalAddress(hostOf(u))) && !exact(u)) {
        throw new InvalidArgument(`${field} host ${quote(u.host)} is a loopback or link-local address; webhooks go there only when K3_WEBHOOK_ALLOW names it`, field);
      }
      return u;
    },
    refuseAddress(u, address) {
      if (isInternalAddress(address) && !exact(u)) {
        return `${u.hostname} resolves to ${address}, a loopback or link-local address; add it to K3_WEBHOOK_ALLOW to deliver there`;
      }
      return undefined;
    },
  };
}
