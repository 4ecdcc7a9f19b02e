/**
 * An organization's credentials (SourceService StoreCredential, ListCredentials,
 * GetCredential, DeleteCredential, ValidateCredential), and an external S3 source that
 * signs with one. The upstream is this server's own byte plane, which checks every
 * signature: a discovery through the credential's access key finds the upstream bucket's
 * objects, ValidateCredential tells a good key from a bad one, and a source that names a bad
 * one fails its discovery saying so. Before, /admin/credentials answered 404.
 */
import { SourceService } from "../gen/dodil/k3/source/v1/source_pb";
import { connectClients, type Clients } from "./helpers/clients";
import { jsonClient, type J } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";
import { waitFor } from "./helpers/wait";

jest.setTimeout(120_000);

let s: TestServers;
let admin: ReturnType<typeof jsonClient>;
let adminAuth: Record<string, string>;
let keys: { id: string; secret: string };
let clients: Clients;

beforeAll(async () => {
  s = await startServers({ K3_ROLE: "all", K3_AUTH: "on", K3_POLL_MS: "50" });
  const t = await insertToken(s, "default", [{ bucket: "*", role: "admin" }], true);
  adminAuth = { authorization: `Bearer ${t.token}` };
  keys = { id: t.id, secret: t.secret };
  admin = jsonClient(() => s.httpUrl, adminAuth);
  for (const name of ["upstream", "kb-cred"]) expect((await admin("POST", "/admin/buckets", { name })).status).toBe(200);
  for (const key of ["shared/a.txt", "shared/b.txt"]) expect((await fetch(`${s.httpUrl}/upstream/${key}`, { method: "PUT", headers: adminAuth, body: `bytes of ${key}` })).status).toBe(200);
  clients = connectClients(s.httpUrl, s.grpcAddress);
});
afterAll(async () => {
  clients?.close();
  await s?.stop();
});

const accessKey = (id: string, secret: string, name = "upstream keys") => ({
  provider: "SOURCE_PROVIDER_EXTERNAL_S3",
  credential_type: "CREDENTIAL_TYPE_ACCESS_KEY",
  display_name: name,
  access_key: { access_key_id: id, secret_access_key: secret },
});

async function discovered(sourceId: string): Promise<J> {
  expect((await admin("POST", `/kb-cred/sources/${sourceId}/discover`, {})).json.accepted).toBe(true);
  return waitFor("the discovery to end", async () => {
    const status = (await admin("GET", `/kb-cred/sources/${sourceId}/sync`)).json;
    return status.syncing === false && status.lastSyncAt !== "0" ? status : undefined;
  }, { timeoutMs: 30_000, intervalMs: 100 });
}

test("an access key is stored once, listed without its secret, read back whole by an admin, and signs an external source's discovery", async () => {
  const stored = await admin("POST", "/admin/credentials", accessKey(keys.id, keys.secret));
  expect(stored.status).toBe(200);
  const info = stored.json.credential;
  expect(info).toMatchObject({ provider: "SOURCE_PROVIDER_EXTERNAL_S3", credentialType: "CREDENTIAL_TYPE_ACCESS_KEY", displayName: "upstream keys", hint: keys.id });
  expect(info.credentialId).toMatch(/^cred_/);
  expect(JSON.stringify(stored.json)).not.toContain(keys.secret);
  const listed = await admin("GET", "/admin/credentials?provider=SOURCE_PROVIDER_EXTERNAL_S3");
  expect(listed.json.credentials.map((c: J) => c.credentialId)).toEqual([info.credentialId]);
  expect(listed.json.pagination.totalCount).toBe("1");
  expect(JSON.stringify(listed.json)).not.toContain(keys.secret);
  const whole = await admin("GET", `/admin/credentials/${info.credentialId}`);
  expect(whole.json.credential.accessKey).toEqual({ accessKeyId: keys.id, secretAccessKey: keys.secret });

  const created = await admin("POST", "/kb-cred/sources", {
    provider: "SOURCE_PROVIDER_EXTERNAL_S3",
    name: "upstream",
    root_path: "shared/",
    external_s3: { endpoint: s.httpUrl, bucket: "upstream", credential_id: info.credentialId },
  });
  expect(created.status).toBe(200);
  expect(created.json.source.externalS3).toMatchObject({ bucket: "upstream", credentialId: info.credentialId });
  const status = await discovered(created.json.source.sourceId);
  expect(status.lastError ?? "").toBe("");
  const got = await admin("GET", `/kb-cred/sources/${created.json.source.sourceId}`);
  expect(got.json.source.totalObjects).toBe("2");

  const valid = await admin("POST", `/admin/credentials/${info.credentialId}/validate`, {});
  expect(valid.json).toEqual({ valid: true, message: `listed bucket "upstream" at ${s.httpUrl} (source ${created.json.source.sourceId}) with access key ${keys.id}` });
  // In use: not deleted.
  const held = await admin("DELETE", `/admin/credentials/${info.credentialId}`);
  expect([held.status, held.json.code]).toEqual([400, "failed_precondition"]);
  expect(held.json.message).toContain(`is used by sources ${created.json.source.sourceId}`);
});

test("a wrong key is told apart: ValidateCredential says what the upstream answered, and a source signing with it fails its discovery saying so", async () => {
  const bad = (await admin("POST", "/admin/credentials", accessKey(keys.id, "not-the-secret-at-all-0000000000000000000", "wrong keys"))).json.credential;
  const src = (await admin("POST", "/kb-cred/sources", { provider: "SOURCE_PROVIDER_EXTERNAL_S3", name: "wrong", root_path: "shared/", external_s3: { endpoint: s.httpUrl, bucket: "upstream", credential_id: bad.credentialId } })).json.source;
  const check = await admin("POST", `/admin/credentials/${bad.credentialId}/validate`, {});
  expect(check.json.valid).toBe(false);
  expect(check.json.message).toMatch(/answered 403 SignatureDoesNotMatch to a listing signed with access key/);
  const status = await discovered(src.sourceId);
  expect(status.lastError).toBe("the S3 server refused to list the bucket: 403 SignatureDoesNotMatch");
  // Pointed at its own key pair, the source lets the credential go.
  expect((await admin("PATCH", `/kb-cred/sources/${src.sourceId}`, { external_s3: { endpoint: s.httpUrl, bucket: "upstream", access_key_id: keys.id, secret_access_key: keys.secret } })).status).toBe(200);
  expect((await admin("DELETE", `/admin/credentials/${bad.credentialId}`)).status).toBe(200);
  expect((await admin("GET", `/admin/credentials/${bad.credentialId}`)).status).toBe(404);
});

test("bad credentials are refused naming the field; OAuth answers UNIMPLEMENTED; credentials are the organization's, behind a grant on every bucket", async () => {
  const cases: Array<[J, number, RegExp]> = [
    [{ ...accessKey("AK", "s"), credential_type: "CREDENTIAL_TYPE_PAT" }, 400, /^credential_type PAT does not match the access_key data given; it would be CREDENTIAL_TYPE_ACCESS_KEY/],
    [{ ...accessKey("AK", ""), access_key: { access_key_id: "AK" } }, 400, /access_key\.secret_access_key/],
    [{ ...accessKey("AK", "s"), provider: "SOURCE_PROVIDER_INTERNAL_S3" }, 400, /needs no credential/],
    [{ provider: "SOURCE_PROVIDER_GITHUB", credential_type: "CREDENTIAL_TYPE_SERVICE_ACCOUNT", display_name: "sa", service_account: { json_key: "{nope" } }, 400, /^service_account\.json_key: not JSON/],
    [{ provider: "SOURCE_PROVIDER_EXTERNAL_S3", credential_type: "CREDENTIAL_TYPE_PAT", display_name: "p", pat: { token: "t" } }, 400, /an external S3 source signs with an access key/],
    [{ ...accessKey("AK", "s"), source_id: "src_nope" }, 404, /source_id "src_nope" not found/],
    [{ ...accessKey("AK", "s"), display_name: "" }, 400, /display_name/],
  ];
  for (const [body, status, message] of cases) {
    const res = await admin("POST", "/admin/credentials", body);
    expect([res.status, res.json.message]).toEqual([status, expect.stringMatching(message)]);
  }
  const pat = await admin("POST", "/admin/credentials", { provider: "SOURCE_PROVIDER_GITHUB", credential_type: "CREDENTIAL_TYPE_PAT", display_name: "ci", pat: { token: "ghp_secret1234", username: "octo" } });
  expect(pat.json.credential.hint).toBe("octo");
  // The hint's last four are characters: a secret ending in ones outside the BMP was cut mid-pair, which jsonb refused (INTERNAL).
  const astral = await admin("POST", "/admin/credentials", { provider: "SOURCE_PROVIDER_GITHUB", credential_type: "CREDENTIAL_TYPE_PAT", display_name: "emoji", pat: { token: "tok-\u{1F427}\u{1F427}x" } });
  expect([astral.status, astral.json.credential?.hint]).toEqual([200, "…-\u{1F427}\u{1F427}x"]);
  expect((await admin("POST", `/admin/credentials/${pat.json.credential.credentialId}/validate`, {})).status).toBe(501);
  for (const [path, body] of [["/admin/oauth/authorize", { provider: "google_drive" }], ["/admin/oauth/token", { provider: "google_drive", code: "c" }], [`/admin/credentials/${pat.json.credential.credentialId}/refresh`, {}]] as const) {
    const res = await admin("POST", path, body);
    expect([res.status, res.json.code, res.json.message]).toEqual([501, "unimplemented", expect.stringContaining("OAuth providers (Google Drive, SharePoint, Confluence, GitHub) are not served")]);
  }

  const reader = { authorization: `Bearer ${(await insertToken(s, "default", [{ bucket: "*", role: "reader" }])).token}` };
  const bucketAdmin = { authorization: `Bearer ${(await insertToken(s, "default", [{ bucket: "kb-cred", role: "admin" }])).token}` };
  const other = { authorization: `Bearer ${(await insertToken(s, "acme", [{ bucket: "*", role: "admin" }])).token}` };
  expect(await clients.call("grpc", SourceService, "ListCredentials", {}, reader)).toMatchObject({ ok: true });
  expect(await clients.call("connect", SourceService, "GetCredential", { credentialId: pat.json.credential.credentialId }, reader)).toMatchObject({ ok: false, code: "permission_denied" });
  expect(await clients.call("grpc", SourceService, "ListCredentials", {}, bucketAdmin)).toMatchObject({ ok: false, code: "permission_denied" });
  const theirs = await clients.call("grpc", SourceService, "ListCredentials", {}, other);
  expect(theirs).toMatchObject({ ok: true });
  expect(JSON.stringify(theirs)).not.toContain(pat.json.credential.credentialId);
  expect(await clients.call("grpc", SourceService, "GetCredential", { credentialId: pat.json.credential.credentialId }, other)).toMatchObject({ ok: false, code: "not_found" });
});

test("a source saved while its credential is being deleted: whichever commits first wins, and no source names a credential that is gone", async () => {
  const { Client } = await import("pg");
  const db = new Client({ connectionString: s.db.url });
  await db.connect();
  try {
    /** Until a call waits on a row this test's transaction holds. */
    const blocked = (call: string) =>
      waitFor(`${call} to wait on the credential's row`, async () => {
        // Polled from inside the locking transaction, which keeps the sessions of its first
        // look at pg_stat_activity to its end: a session the server's pool opened afterwards
        // for the call was never seen (CI failed once so). Each poll drops that snapshot.
        await db.query("SELECT pg_stat_clear_snapshot()");
        // This database's sessions only: other test files run beside this one on the same server.
        const { rows } = await db.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
        return rows[0].n > 0 || undefined;
      }, { timeoutMs: 10_000, intervalMs: 20 });
    const store = async (name: string) => (await admin("POST", "/admin/credentials", accessKey(keys.id, keys.secret, name))).json.credential.credentialId as string;
    const source = (name: string, credentialId: string) => ({ provider: "SOURCE_PROVIDER_EXTERNAL_S3", name, external_s3: { endpoint: s.httpUrl, bucket: "upstream", credential_id: credentialId } });

    // The deletion first: it holds the credential's row (as DeleteCredential does) while a
    // CreateSource naming it arrives, then deletes it and commits. The create, which had
    // found the credential when it checked, saves nothing.
    const doomed = await store("doomed");
    await db.query("BEGIN");
    await db.query("SELECT 1 FROM credentials WHERE credential_id = $1 FOR UPDATE", [doomed]);
    const creating = admin("POST", "/kb-cred/sources", source("racer", doomed));
    await blocked("the create");
    await db.query("DELETE FROM credentials WHERE credential_id = $1", [doomed]);
    await db.query("COMMIT");
    const lost = await creating;
    expect([lost.status, lost.json.code, lost.json.message]).toEqual([404, "not_found", `external_s3.credential_id "${doomed}" was deleted while the source was being saved; nothing was saved`]);
    expect((await db.query("SELECT count(*)::int AS n FROM sources WHERE config->>'credential_id' = $1", [doomed])).rows[0].n).toBe(0);

    // An update that switches a source to a credential being deleted is refused the same way.
    const kept = await store("kept");
    const made = await admin("POST", "/kb-cred/sources", source("switcher", kept));
    expect(made.status).toBe(200);
    const other = await store("other");
    await db.query("BEGIN");
    await db.query("SELECT 1 FROM credentials WHERE credential_id = $1 FOR UPDATE", [other]);
    const switching = admin("PATCH", `/kb-cred/sources/${made.json.source.sourceId}`, { external_s3: { endpoint: s.httpUrl, bucket: "upstream", credential_id: other } });
    await blocked("the update");
    await db.query("DELETE FROM credentials WHERE credential_id = $1", [other]);
    await db.query("COMMIT");
    expect((await switching).status).toBe(404);
    expect((await admin("GET", `/kb-cred/sources/${made.json.source.sourceId}`)).json.source.externalS3.credentialId).toBe(kept);

    // The save first: a source is switched to a fresh credential by the statement UpdateSource
    // runs (its row held as that write holds it), and DeleteCredential arrives before the
    // commit. It waits, then finds the source and is refused.
    const fresh = await store("fresh");
    const switcher = made.json.source.sourceId as string;
    await db.query("BEGIN");
    await db.query(
      `UPDATE sources SET config = jsonb_set(config, '{credential_id}', to_jsonb($2::text))
       WHERE source_id = $1 AND EXISTS (SELECT 1 FROM credentials WHERE credential_id = $2 FOR KEY SHARE)`,
      [switcher, fresh],
    );
    const deleting = admin("DELETE", `/admin/credentials/${fresh}`);
    await blocked("the delete");
    await db.query("COMMIT");
    const refused = await deleting;
    expect([refused.status, refused.json.code]).toEqual([400, "failed_precondition"]);
    expect(refused.json.message).toContain(switcher);
    expect((await admin("GET", `/admin/credentials/${fresh}`)).status).toBe(200);
  } finally {
    await db.end();
  }
});
