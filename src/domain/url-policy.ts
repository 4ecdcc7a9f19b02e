/**
 * Where the server may connect on a caller's behalf: webhooks (K3_WEBHOOK_ALLOW) and
 * external S3 sources (K3_SOURCE_ALLOW). A URL is http(s) without credentials; when the
 * allow-list is set (comma-separated `host`, `host:port` or `*.domain`) its host must match
 * an entry. Loopback, unspecified and link-local addresses (the server itself, cloud
 * metadata) are refused unless an entry names that host exactly — checked when the URL is
 * given, and again on every connection against the address the name resolves to then
 * (`guardedLookup`), so a name that later resolves to 127.0.0.1 (DNS rebinding) is refused too.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { InvalidArgument } from "./errors";
import { quote } from "./validate";

export interface UrlPolicy {
  /** Checks a URL given by a caller; throws InvalidArgument naming what is wrong. */
  checkUrl(raw: string, field: string): URL;
  /** Why connecting to `url`'s host at the resolved `address` is refused, or undefined. */
  refuseAddress(url: URL, address: string): string | undefined;
}

/** What the policy guards, for its messages. */
export interface UrlPolicyUse {
  /** The allow-list's environment variable, e.g. "K3_WEBHOOK_ALLOW". */
  variable: string;
  /** What goes there, e.g. "webhooks". */
  what: string;
  /** Why a URL carries no credentials here. */
  noCredentials: string;
}

export const WEBHOOK_URLS: UrlPolicyUse = {
  variable: "K3_WEBHOOK_ALLOW",
  what: "webhooks",
  noCredentials: "receivers verify the webhook-signature header instead",
};

export const SOURCE_ENDPOINTS: UrlPolicyUse = {
  variable: "K3_SOURCE_ALLOW",
  what: "external S3 sources",
  noCredentials: "give the access key in external_s3.access_key_id and external_s3.secret_access_key",
};

/** Loopback, unspecified and link-local ranges; an IPv4-mapped IPv6 address (::ffff:7f00:1) is checked as IPv4. */
const INTERNAL = new BlockList();
INTERNAL.addSubnet("127.0.0.0", 8, "ipv4");
INTERNAL.addSubnet("0.0.0.0", 8, "ipv4");
INTERNAL.addSubnet("169.254.0.0", 16, "ipv4");
INTERNAL.addAddress("::1", "ipv6");
INTERNAL.addAddress("::", "ipv6");
INTERNAL.addSubnet("fe80::", 10, "ipv6");

/** Loopback, unspecified or link-local: addresses that reach this machine or its platform. */
export function isInternalAddress(address: string): boolean {
  const a = address.toLowerCase().replace(/^\[|\]$/g, "");
  const family = isIP(a);
  return family !== 0 && INTERNAL.check(a, family === 4 ? "ipv4" : "ipv6");
}

/** localhost and its subdomains, with or without the final dot of a fully qualified name. */
const isLocalName = (host: string) => /(^|\.)localhost\.?$/.test(host);

export function createUrlPolicy(allow: readonly string[], use: UrlPolicyUse): UrlPolicy {
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
        throw new InvalidArgument(`${field} ${quote(raw)} has the scheme ${quote(u.protocol.slice(0, -1))}; ${use.what} are reached over http or https`, field);
      }
      if (u.username || u.password) throw new InvalidArgument(`${field} must not carry credentials; ${use.noCredentials}`, field);
      if (entries.length > 0 && !listed(u)) {
        throw new InvalidArgument(`${field} host ${quote(u.host)} is not in this server's allow-list for ${use.what} (${use.variable}: ${entries.join(", ")})`, field);
      }
      if ((isLocalName(hostOf(u)) || isInternalAddress(hostOf(u))) && !exact(u)) {
        throw new InvalidArgument(`${field} host ${quote(u.host)} is a loopback or link-local address; ${use.what} go there only when ${use.variable} names it`, field);
      }
      return u;
    },
    refuseAddress(u, address) {
      if (isInternalAddress(address) && !exact(u)) {
        return `${u.hostname} resolves to ${address}, a loopback or link-local address; add it to ${use.variable} to connect there`;
      }
      return undefined;
    },
  };
}

/**
 * A `lookup` for http(s).request that connects `url` only to addresses `policy` accepts;
 * throws at once when the URL's host is itself a refused address (a literal IP skips lookups).
 */
export function guardedLookup(url: URL, policy: UrlPolicy): LookupFunction {
  const refusedLiteral = policy.refuseAddress(url, url.hostname.replace(/^\[|\]$/g, ""));
  if (refusedLiteral) throw new Error(refusedLiteral);
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, "", 0);
      const refused = addresses.map((a) => policy.refuseAddress(url, a.address)).find((r) => r !== undefined);
      if (refused) return callback(new Error(refused), "", 0);
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      callback(null, addresses[0].address, addresses[0].family);
    });
  };
}
