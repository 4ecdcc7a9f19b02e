/**
 * A bucket's policy: S3's resource policy (PutBucketPolicy on the byte plane, SetBucketPolicy
 * on StorageService), a JSON document of statements that allow or deny S3 actions on the
 * bucket and its objects to principals — anyone (`"*"`, which includes requests without
 * credentials) or named tokens (`tok_…`). It is checked when it is set, as S3 checks it
 * (errors name the statement's element, the value and what is accepted), and evaluated as S3
 * evaluates it: a matching Deny wins; otherwise a matching Allow, or the caller's own token
 * grant, lets the request through.
 *
 * What this server keeps narrower than S3: a policy may grant only the actions that read or
 * write objects and read the bucket's settings (POLICY_GRANTABLE); the actions that change
 * the bucket's settings or the bucket itself stay with the admin role and may only be denied.
 * Condition, NotPrincipal, NotAction and NotResource are refused rather than ignored: an
 * ignored condition would widen an Allow or narrow a Deny without saying so.
 */
import { InvalidArgument } from "./errors";
import { quote } from "./validate";

/** Actions a policy may allow (and deny), as the byte plane names its operations. */
export const POLICY_GRANTABLE = [
  "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
  "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation", "s3:GetBucketVersioning",
  "s3:GetBucketCORS", "s3:GetBucketPolicy", "s3:GetBucketPolicyStatus",
  "s3:GetObjectTagging", "s3:PutObjectTagging", "s3:DeleteObjectTagging",
] as const;

/** Actions that need the admin role whatever the policy says; a policy may only deny them. */
export const POLICY_ADMIN_ONLY = ["s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketCORS", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"] as const;

export type PolicyAction = (typeof POLICY_GRANTABLE)[number] | (typeof POLICY_ADMIN_ONLY)[number];

const ALL_ACTIONS: readonly string[] = [...POLICY_GRANTABLE, ...POLICY_ADMIN_ONLY];

/** A policy's own actions: an admin may always run them, so a policy can never lock its bucket away from them. */
export const POLICY_OWN_ACTIONS: readonly string[] = ["s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"];

/** S3's limit on a bucket policy's size. */
export const MAX_POLICY_BYTES = 20 * 1024;
const MAX_STATEMENTS = 100;
const VERSIONS = ["2012-10-17", "2008-10-17"];
const ARN_PREFIX = "arn:aws:s3:::";
const TOKEN_ID = /^tok_[0-9a-f]{16}$/;

/** One statement, compiled for matching. */
export interface PolicyStatement {
  /** Its Sid, or where it stands (`Statement[1]`) when it has none: what a refusal names. */
  sid: string;
  effect: "Allow" | "Deny";
  /** "*" (anyone, credentials or not) or token ids. */
  principals: string[];
  actions: RegExp[];
  resources: RegExp[];
}

/** A bucket's policy: the document as it was set, and its compiled statements. */
export interface BucketPolicy {
  text: string;
  statements: PolicyStatement[];
  /** True when a statement allows something to anyone ("*"): requests without credentials may then reach the bucket. */
  public: boolean;
}

/** What a policy says about one request: "deny" (with why, naming the statement), "allow", or nothing. */
export type PolicyDecision = { effect: "deny"; reason: string } | { effect: "allow" } | undefined;

/** A pattern of IAM's wildcards (`*` any run of characters, `?` one) as an anchored RegExp. */
function wildcard(pattern: string, flags = ""): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`, `s${flags}`);
}

/** A list element (a string, or an array of strings) of a statement, checked. */
function strings(value: unknown, field: string): string[] {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) throw new InvalidArgument(`policy ${field}: an empty list names nothing; give at least one value`, "policy");
  list.forEach((v, i) => {
    if (typeof v !== "string") throw new InvalidArgument(`policy ${field}${Array.isArray(value) ? `[${i}]` : ""}: ${JSON.stringify(v)} is not a string`, "policy");
  });
  return list as string[];
}

function principalsOf(value: unknown, at: string): string[] {
  if (value === "*") return ["*"];
  const aws = value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>).AWS : undefined;
  const other = value && typeof value === "object" ? Object.keys(value).filter((k) => k !== "AWS") : [];
  if (aws === undefined || other.length > 0) {
    throw new InvalidArgument(`policy ${at}.Principal: ${quote(JSON.stringify(value))} is not accepted; use "*" (anyone, with or without credentials) or {"AWS": ["tok_…"]} naming tokens by id`, "policy");
  }
  const list = strings(aws, `${at}.Principal.AWS`);
  list.forEach((p, i) => {
    if (p !== "*" && !TOKEN_ID.test(p)) {
      throw new InvalidArgument(`policy ${at}.Principal.AWS${Array.isArray(aws) ? `[${i}]` : ""}: ${quote(p)} is not "*" or a token id (tok_ and 16 hex digits, as \`k3-ingest tokens list\` shows them)`, "policy");
    }
  });
  return list.includes("*") ? ["*"] : list;
}

function actionsOf(value: unknown, at: string, effect: string): RegExp[] {
  const list = strings(value, `${at}.Action`);
  return list.map((a, i) => {
    const field = `${at}.Action${Array.isArray(value) ? `[${i}]` : ""}`;
    const pattern = a === "*" ? "s3:*" : a;
    const re = wildcard(pattern, "i");
    const named = ALL_ACTIONS.filter((n) => re.test(n));
    if (!/^s3:[A-Za-z*?]+$/.test(pattern) || named.length === 0) {
      throw new InvalidArgument(`policy ${field}: ${quote(a)} names none of the actions served here: ${ALL_ACTIONS.join(", ")} (wildcards * and ? allowed)`, "policy");
    }
    if (effect === "Allow" && !/[*?]/.test(pattern) && (POLICY_ADMIN_ONLY as readonly string[]).includes(named[0])) {
      throw new InvalidArgument(`policy ${field}: ${named[0]} can be denied by a policy but not granted: it needs a token with the admin role`, "policy");
    }
    return re;
  });
}

function resourcesOf(value: unknown, at: string, bucket: string): RegExp[] {
  const list = strings(value, `${at}.Resource`);
  return list.map((r, i) => {
    const field = `${at}.Resource${Array.isArray(value) ? `[${i}]` : ""}`;
    const rest = r.startsWith(ARN_PREFIX) ? r.slice(ARN_PREFIX.length) : undefined;
    const named = rest === undefined ? undefined : rest.split("/", 1)[0];
    if (named !== bucket) {
      throw new InvalidArgument(`policy ${field}: ${quote(r)} is not this bucket or its objects; use ${quote(ARN_PREFIX + bucket)} or ${quote(`${ARN_PREFIX}${bucket}/*`)} (wildcards allowed in the key)`, "policy");
    }
    return wildcard(r);
  });
}

const STATEMENT_KEYS = ["Sid", "Effect", "Principal", "Action", "Resource"];
const REFUSED_KEYS: Record<string, string> = {
  Condition: "conditions are not evaluated here",
  NotPrincipal: "name the principals with Principal",
  NotAction: "name the actions with Action",
  NotResource: "name the resources with Resource",
};

/** Parses and checks a bucket policy document for `bucket`; InvalidArgument (field "policy") naming what is wrong. */
export function parseBucketPolicy(text: string, bucket: string): BucketPolicy {
  if (Buffer.byteLength(text) > MAX_POLICY_BYTES) throw new InvalidArgument(`policy: ${Buffer.byteLength(text)} bytes is over the ${MAX_POLICY_BYTES}-byte limit of a bucket policy`, "policy");
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgument(`policy: not JSON (${(err as Error).message}); a policy is {"Version": "2012-10-17", "Statement": [...]}`, "policy");
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new InvalidArgument(`policy: a policy is a JSON object {"Version": "2012-10-17", "Statement": [...]}`, "policy");
  const d = doc as Record<string, unknown>;
  const extra = Object.keys(d).find((k) => !["Version", "Id", "Statement"].includes(k));
  if (extra) throw new InvalidArgument(`policy: ${quote(extra)} is not an element of a policy (Version, Id, Statement)`, "policy");
  if (d.Version !== undefined && !VERSIONS.includes(d.Version as string)) {
    throw new InvalidArgument(`policy Version: ${JSON.stringify(d.Version)} is not one of ${VERSIONS.join(", ")}`, "policy");
  }
  const list = Array.isArray(d.Statement) ? d.Statement : d.Statement === undefined ? [] : [d.Statement];
  if (list.length === 0 || list.length > MAX_STATEMENTS) throw new InvalidArgument(`policy Statement: ${list.length} statements; a policy has 1 to ${MAX_STATEMENTS}`, "policy");
  const statements = list.map((s, i): PolicyStatement => {
    const at = Array.isArray(d.Statement) ? `Statement[${i}]` : "Statement";
    if (!s || typeof s !== "object" || Array.isArray(s)) throw new InvalidArgument(`policy ${at}: a statement is a JSON object`, "policy");
    const st = s as Record<string, unknown>;
    for (const key of Object.keys(st)) {
      if (REFUSED_KEYS[key]) throw new InvalidArgument(`policy ${at}.${key}: not supported by this server (${REFUSED_KEYS[key]}); the policy was not stored`, "policy");
      if (!STATEMENT_KEYS.includes(key)) throw new InvalidArgument(`policy ${at}: ${quote(key)} is not an element of a statement (${STATEMENT_KEYS.join(", ")})`, "policy");
    }
    if (st.Sid !== undefined && typeof st.Sid !== "string") throw new InvalidArgument(`policy ${at}.Sid: ${JSON.stringify(st.Sid)} is not a string`, "policy");
    if (st.Effect !== "Allow" && st.Effect !== "Deny") throw new InvalidArgument(`policy ${at}.Effect: ${JSON.stringify(st.Effect ?? null)} is not "Allow" or "Deny"`, "policy");
    for (const key of ["Principal", "Action", "Resource"]) {
      if (st[key] === undefined) throw new InvalidArgument(`policy ${at}: ${key} is missing; a statement names its Effect, Principal, Action and Resource`, "policy");
    }
    return {
      sid: (st.Sid as string | undefined) || at,
      effect: st.Effect,
      principals: principalsOf(st.Principal, at),
      actions: actionsOf(st.Action, at, st.Effect),
      resources: resourcesOf(st.Resource, at, bucket),
    };
  });
  return { text, statements, public: statements.some((s) => s.effect === "Allow" && s.principals.includes("*")) };
}

/** The resource a request names: the bucket, or one of its objects. */
export function resourceArn(bucket: string, key?: string): string {
  return key === undefined ? ARN_PREFIX + bucket : `${ARN_PREFIX}${bucket}/${key}`;
}

/**
 * What `policy` says about `principal` (a token id; "" for a request without one) running
 * `action` on `bucket` (or its object `key`): a matching Deny wins over any Allow; an Allow
 * counts only for the grantable actions.
 */
export function policyDecision(policy: BucketPolicy | undefined, principal: string, action: PolicyAction, bucket: string, key?: string): PolicyDecision {
  if (!policy) return undefined;
  const resource = resourceArn(bucket, key);
  let allowed = false;
  for (const s of policy.statements) {
    if (!s.principals.some((p) => p === "*" || p === principal)) continue;
    if (!s.actions.some((a) => a.test(action)) || !s.resources.some((r) => r.test(resource))) continue;
    if (s.effect === "Deny") return { effect: "deny", reason: `${action} on ${resource} is denied by the policy of bucket ${quote(bucket)} (${s.sid})` };
    allowed = true;
  }
  return allowed && (POLICY_GRANTABLE as readonly string[]).includes(action) ? { effect: "allow" } : undefined;
}

/**
 * A stored policy, compiled. One this version cannot read (a stricter check than the one
 * that stored it) denies everything but the policy's own actions to admins, rather than
 * dropping its Deny statements: an admin can read and replace it.
 */
export function storedBucketPolicy(text: string, bucket: string): BucketPolicy {
  try {
    return parseBucketPolicy(text, bucket);
  } catch (err) {
    const all = /.*/s;
    return { text, public: false, statements: [{ sid: `the stored policy, unreadable here (${(err as Error).message})`, effect: "Deny", principals: ["*"], actions: [all], resources: [all] }] };
  }
}
