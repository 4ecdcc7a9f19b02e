/**
 * `k3-ingest tokens create|list|revoke`: token management straight against the database
 * (DATABASE_URL, or the embedded default of K3_DATA_DIR). A new token is printed once,
 * on stdout; only its hash is stored.
 */
import { parseArgs } from "node:util";
import type { Config } from "../config";
import { checkOrg, checkRole, DEFAULT_ORG, newAccessKey, newToken, parseDuration, type StoredToken } from "../domain/auth";
import { loadSecretBox } from "../storage/secrets";
import { DomainError } from "../domain/errors";
import { checkBucket } from "../domain/validate";
import { startEmbeddedPostgres } from "../storage/postgres/embedded";
import { migrate } from "../storage/postgres/migrate";
import { PgRepository } from "../storage/postgres/repository";

const USAGE = `usage:
  tokens create [--org ORG] --bucket BUCKET|'*' --role reader|writer|admin [--expires 30d] [--name TEXT] [--s3]
    (--org defaults to "${DEFAULT_ORG}", the organization of the bootstrap admin token and of everything when auth is off;
     --s3 also makes an S3 access key pair with the same grants, for SigV4 clients such as the AWS CLI)
  tokens list [--org ORG] [--json]
  tokens revoke TOKEN_ID`;

function describe(t: StoredToken, now: number): Record<string, unknown> {
  const state = t.revokedAt > 0 ? "revoked" : t.expiresAt > 0 && t.expiresAt <= now ? "expired" : "active";
  return {
    tokenId: t.tokenId,
    org: t.org,
    name: t.name,
    grants: t.grants.map((g) => `${g.bucket}:${g.role}`).join(","),
    state,
    createdAt: new Date(t.createdAt).toISOString(),
    expiresAt: t.expiresAt ? new Date(t.expiresAt).toISOString() : "never",
  };
}

/** Runs the tokens command; resolves with the process exit code. */
export async function runTokensCli(argv: string[], config: Readonly<Config>, out = process.stdout, err = process.stderr): Promise<number> {
  const [command, ...rest] = argv;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        org: { type: "string" },
        bucket: { type: "string" },
        role: { type: "string" },
        expires: { type: "string" },
        name: { type: "string" },
        json: { type: "boolean" },
        s3: { type: "boolean" },
      },
    });
  } catch (e) {
    err.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  if (!["create", "list", "revoke"].includes(command ?? "")) {
    err.write(`${USAGE}\n`);
    return 2;
  }
  let embedded;
  let url = config.databaseUrl;
  if (!url) {
    embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort });
    url = embedded.connectionString;
  }
  const repo = new PgRepository({ connectionString: url, poolSize: 2 });
  try {
    await migrate(repo.pool);
    const now = Date.now();
    if (command === "create") {
      const org = v.org ?? DEFAULT_ORG;
      const bucket = v.bucket ?? "";
      const role = v.role ?? "";
      checkOrg(org, "--org");
      if (bucket !== "*") checkBucket(bucket, "--bucket");
      checkRole(role, "--role");
      const expiresAt = v.expires ? now + parseDuration(v.expires, "--expires") : 0;
      const { token, tokenId, secretHash } = newToken();
      const key = v.s3 ? newAccessKey() : undefined;
      const sealed = key ? loadSecretBox(config.dataDir, config.secretsKey).seal(key.secret) : undefined;
      await repo.tokens.tokenInsert({ tokenId, org, secretHash, name: v.name ?? "", grants: [{ bucket, role }], createdAt: now, expiresAt, revokedAt: 0, accessKeyId: key?.accessKeyId, secretSealed: sealed });
      if (v.json) out.write(JSON.stringify({ token, tokenId, org, bucket, role, expiresAt, ...(key ? { accessKeyId: key.accessKeyId, secretAccessKey: key.secret } : {}) }) + "\n");
      else {
        out.write(`${token}\n`);
        if (key) out.write(`AWS_ACCESS_KEY_ID=${key.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${key.secret}\n`);
        err.write(`created ${tokenId} for organization ${org}: ${role} on ${bucket}; the secrets above are shown only once\n`);
      }
      return 0;
    }
    if (command === "list") {
      if (v.org) checkOrg(v.org, "--org");
      const tokens = (await repo.tokens.tokenList(v.org)).map((t) => describe(t, now));
      if (v.json) out.write(JSON.stringify(tokens) + "\n");
      else for (const t of tokens) out.write(`${t.tokenId}\t${t.org}\t${t.grants}\t${t.state}\texpires ${t.expiresAt}\t${t.name}\n`);
      return 0;
    }
    const tokenId = positionals[0];
    if (!tokenId) {
      err.write(`revoke needs a TOKEN_ID\n${USAGE}\n`);
      return 2;
    }
    if (!(await repo.tokens.tokenRevoke(tokenId, now))) {
      err.write(`no active token ${tokenId}\n`);
      return 5;
    }
    err.write(`revoked ${tokenId}\n`);
    return 0;
  } catch (e) {
    if (e instanceof DomainError) {
      err.write(`${e.message}\n`);
      return e.kind === "invalid_argument" ? 2 : 1;
    }
    throw e;
  } finally {
    await repo.close();
    await embedded?.stop();
  }
}
