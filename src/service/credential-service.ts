/**
 * SourceService's credential calls: an organization's secrets, kept once (sealed, as a
 * source's own secret is) and used by sources by id. Credentials are org-wide, so each call
 * needs a grant on every bucket ("*"): reader to list, admin for the rest. An external S3
 * source signs with an access-key credential it names (ExternalS3.credential_id), read at
 * each sync, so deleting the credential stops the source (which is why a credential in use
 * cannot be deleted) and storing a new one and naming it rotates the key. The OAuth calls
 * answer UNIMPLEMENTED: no OAuth provider is served here.
 */
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { CredentialType, SourceProvider, type CredentialInfo, type CredentialSchema, type SourceService, type StoreCredentialRequest } from "../../gen/dodil/k3/source/v1/source_pb";
import { allows, type Caller, type Role } from "../domain/auth";
import { FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unimplemented } from "../domain/errors";
import { newId } from "../domain/ids";
import { checkLength, checkRequired, quote } from "../domain/validate";
import type { StoredCredential } from "../storage/postgres/credential-store";
import { createS3Client } from "../storage/s3-client";
import { callerKey } from "./caller";
import type { ServiceDeps } from "./deps";
import { servePage } from "./paging";

type CredentialCalls = Pick<
  ServiceImpl<typeof SourceService>,
  "storeCredential" | "listCredentials" | "getCredential" | "deleteCredential" | "validateCredential" | "refreshOAuthToken" | "getOAuthUrl" | "exchangeOAuthCode"
>;

/** Each payload: which of its fields are secret, which are not, which are required. */
const PAYLOADS = {
  oauth2: { type: CredentialType.OAUTH2, secret: ["accessToken", "refreshToken"], open: ["expiresAt", "scope"], required: ["accessToken"] },
  apiKey: { type: CredentialType.API_KEY, secret: ["apiKey"], open: [], required: ["apiKey"] },
  pat: { type: CredentialType.PAT, secret: ["token"], open: ["username"], required: ["token"] },
  accessKey: { type: CredentialType.ACCESS_KEY, secret: ["secretAccessKey"], open: ["accessKeyId"], required: ["accessKeyId", "secretAccessKey"] },
  serviceAccount: { type: CredentialType.SERVICE_ACCOUNT, secret: ["jsonKey"], open: [], required: ["jsonKey"] },
} as const;
type PayloadCase = keyof typeof PAYLOADS;

const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const lowerName = (prefixed: string | undefined) => (prefixed ?? "").toLowerCase();
const OAUTH = "OAuth providers (Google Drive, SharePoint, Confluence, GitHub) are not served by this server; external S3 sources sign with an access key (CREDENTIAL_TYPE_ACCESS_KEY)";

/** The caller, when a grant on every bucket gives it `role`. */
function orgCaller(ctx: HandlerContext, role: Role): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new Error("request reached a service without an authenticated caller");
  if (!allows(caller, "*", role)) throw new PermissionDenied(`credentials belong to the whole organization: this needs a ${role} grant on every bucket ("*")`);
  return caller;
}

function infoOf(c: StoredCredential): CredentialInfo {
  const hint = c.publicData.accessKeyId || c.publicData.username || (c.publicData.last4 ? `…${c.publicData.last4}` : "");
  return {
    credentialId: c.credentialId,
    provider: SourceProvider[c.provider.toUpperCase() as keyof typeof SourceProvider] ?? SourceProvider.UNSPECIFIED,
    credentialType: CredentialType[c.credentialType.toUpperCase() as keyof typeof CredentialType] ?? CredentialType.UNSPECIFIED,
    displayName: c.displayName,
    sourceId: c.sourceId,
    isPrimary: c.isPrimary,
    hint,
    createdAt: BigInt(c.createdAt),
    updatedAt: BigInt(c.updatedAt),
  } as CredentialInfo;
}

/** The credential calls of SourceService. */
export function createCredentialCalls(deps: ServiceDeps): CredentialCalls {
  const { repo, now } = deps;
  const store = repo.credentials;
  const secrets = () => {
    if (!deps.secrets) throw new Error("credentials need the secret box");
    return deps.secrets;
  };

  async function credentialOf(caller: Caller, id: string): Promise<StoredCredential> {
    checkRequired(id, "credential_id");
    checkLength(id, 128, "credential_id");
    const c = await store.credentialGet(caller.org, id);
    if (!c) throw new NotFound(`credential_id ${quote(id)} not found in this organization`);
    return c;
  }

  /** The payload of a StoreCredential, checked against its type: public and secret fields. */
  function payloadOf(req: StoreCredentialRequest): { kind: PayloadCase; open: Record<string, string>; secret: Record<string, string> } {
    const d = req.credentialData;
    if (d.case === undefined) throw new InvalidArgument(`one of ${Object.keys(PAYLOADS).map(snake).join(", ")} is required: the credential's data`, "credential_data");
    const spec = PAYLOADS[d.case];
    if (req.credentialType !== spec.type) {
      throw new InvalidArgument(`credential_type ${CredentialType[req.credentialType] ?? req.credentialType} does not match the ${snake(d.case)} data given; it would be CREDENTIAL_TYPE_${CredentialType[spec.type]}`, "credential_type");
    }
    const value = d.value as unknown as Record<string, string | bigint>;
    const field = (f: string) => `${snake(d.case)}.${snake(f)}`;
    const text = (f: string) => String(value[f] ?? "");
    for (const f of spec.required) checkRequired(text(f), field(f));
    for (const f of [...spec.secret, ...spec.open]) checkLength(text(f), 16_384, field(f));
    if (d.case === "serviceAccount") {
      try {
        JSON.parse(text("jsonKey"));
      } catch {
        throw new InvalidArgument(`${field("jsonKey")}: not JSON; give the service account's key file as it was downloaded`, field("jsonKey"));
      }
    }
    const open: Record<string, string> = {};
    for (const f of spec.open) if (text(f) !== "" && text(f) !== "0") open[f] = text(f);
    const secret: Record<string, string> = {};
    for (const f of spec.secret) secret[f] = text(f);
    // The last four characters, not UTF-16 units: half of a character outside the BMP is not text PostgreSQL's jsonb takes.
    open.last4 = Array.from(secret[spec.secret[0]]).slice(-4).join("");
    return { kind: d.case, open, secret };
  }

  return {
    async storeCredential(req, ctx) {
      const caller = orgCaller(ctx, "admin");
      if (req.provider === SourceProvider.UNSPECIFIED || SourceProvider[req.provider] === undefined) {
        throw new InvalidArgument(`provider ${req.provider} is not a SourceProvider; e.g. SOURCE_PROVIDER_EXTERNAL_S3`, "provider");
      }
      if (req.provider === SourceProvider.INTERNAL_S3) throw new InvalidArgument("provider SOURCE_PROVIDER_INTERNAL_S3 needs no credential: it is the bucket's own byte plane", "provider");
      checkRequired(req.displayName, "display_name");
      checkLength(req.displayName, 200, "display_name");
      const payload = payloadOf(req);
      if (req.provider === SourceProvider.EXTERNAL_S3 && payload.kind !== "accessKey") {
        throw new InvalidArgument(`credential_type ${CredentialType[req.credentialType]}: an external S3 source signs with an access key (CREDENTIAL_TYPE_ACCESS_KEY and access_key)`, "credential_type");
      }
      if (req.sourceId !== "") {
        checkLength(req.sourceId, 128, "source_id");
        const s = await repo.sync.sourceById(req.sourceId);
        if (!s || s.org !== caller.org) throw new NotFound(`source_id ${quote(req.sourceId)} not found in this organization`);
      }
      const at = now();
      const c: StoredCredential = {
        credentialId: newId("cred", at),
        org: caller.org,
        provider: lowerName(SourceProvider[req.provider]),
        credentialType: lowerName(CredentialType[req.credentialType]),
        displayName: req.displayName,
        sourceId: req.sourceId,
        isPrimary: req.isPrimary,
        publicData: payload.open,
        secretSealed: secrets().seal(JSON.stringify(payload.secret)).toString("base64"),
        createdAt: at,
        updatedAt: at,
      };
      await store.credentialInsert(c);
      return { credential: infoOf(c) };
    },

    async listCredentials(req, ctx) {
      const caller = orgCaller(ctx, "reader");
      if (req.provider !== SourceProvider.UNSPECIFIED && SourceProvider[req.provider] === undefined) throw new InvalidArgument(`provider ${req.provider} is not a SourceProvider`, "provider");
      checkLength(req.sourceId, 128, "source_id");
      const provider = req.provider === SourceProvider.UNSPECIFIED ? "" : lowerName(SourceProvider[req.provider]);
      const filter = { org: caller.org, provider, sourceId: req.sourceId };
      const page = await servePage(req, filter, (p) => store.credentialList(filter, { ...p, signal: ctx.signal }), (c) => c.credentialId);
      return { credentials: page.items.map(infoOf), pagination: { nextPageToken: page.nextPageToken, totalCount: BigInt(page.total) } };
    },

    async getCredential(req, ctx) {
      const c = await credentialOf(orgCaller(ctx, "admin"), req.credentialId);
      const secret = JSON.parse(secrets().open(Buffer.from(c.secretSealed, "base64"))) as Record<string, string>;
      const kind = (Object.keys(PAYLOADS) as PayloadCase[]).find((k) => snake(k) === c.credentialType) ?? "accessKey";
      const data: Record<string, string | bigint> = { ...c.publicData, ...secret };
      delete data.last4;
      if (kind === "oauth2") data.expiresAt = BigInt(c.publicData.expiresAt ?? "0");
      // The payload's fields are the case's message fields, by construction of PAYLOADS.
      const credential = { info: infoOf(c), credentialData: { case: kind, value: data } } as MessageInitShape<typeof CredentialSchema>;
      return { credential };
    },

    async deleteCredential(req, ctx) {
      const caller = orgCaller(ctx, "admin");
      checkRequired(req.credentialId, "credential_id");
      const res = await store.credentialDelete(caller.org, req.credentialId);
      if (res === "not_found") throw new NotFound(`credential_id ${quote(req.credentialId)} not found in this organization`);
      if (res !== "deleted") throw new FailedPrecondition(`credential ${quote(req.credentialId)} is used by sources ${res.usedBy.join(", ")}; point them at another credential (or key pair) first`);
      return {};
    },

    async validateCredential(req, ctx) {
      const caller = orgCaller(ctx, "admin");
      const c = await credentialOf(caller, req.credentialId);
      if (c.credentialType !== "access_key") throw new Unimplemented(`credential_type ${c.credentialType}: only access keys can be tried here (${OAUTH})`);
      const sourceId = c.sourceId || (await repo.sync.sourcesUsingCredential(caller.org, c.credentialId))[0];
      const source = sourceId ? await repo.sync.sourceById(sourceId) : undefined;
      if (!source?.external || source.org !== caller.org) {
        throw new FailedPrecondition(`credential ${quote(c.credentialId)} is tried against the bucket of an external S3 source; bind it to one (source_id) or name it in one (external_s3.credential_id)`);
      }
      const secret = JSON.parse(secrets().open(Buffer.from(c.secretSealed, "base64"))) as Record<string, string>;
      const client = createS3Client({ ...source.external, region: source.external.region || "us-east-1", accessKeyId: c.publicData.accessKeyId ?? "", secretAccessKey: secret.secretAccessKey ?? "", endpoints: deps.sourceEndpoints });
      const where = `bucket ${quote(source.external.bucket)} at ${source.external.endpoint} (source ${source.sourceId})`;
      try {
        const res = await client.call("GET", "", "list-type=2&max-keys=1", { signal: ctx.signal });
        const xml = await res.text();
        if (res.status === 200) return { valid: true, message: `listed ${where} with access key ${c.publicData.accessKeyId}` };
        const code = /<Code>([^<]*)<\/Code>/.exec(xml)?.[1] ?? "";
        return { valid: false, message: `${where} answered ${res.status}${code ? ` ${code}` : ""} to a listing signed with access key ${c.publicData.accessKeyId}` };
      } catch (err) {
        return { valid: false, message: `${where}: ${(err as Error).message}` };
      }
    },

    async refreshOAuthToken(req, ctx) {
      await credentialOf(orgCaller(ctx, "admin"), req.credentialId);
      throw new Unimplemented(OAUTH);
    },

    async getOAuthUrl(_req, ctx) {
      orgCaller(ctx, "admin");
      throw new Unimplemented(OAUTH);
    },

    async exchangeOAuthCode(_req, ctx) {
      orgCaller(ctx, "admin");
      throw new Unimplemented(OAUTH);
    },
  };
}
