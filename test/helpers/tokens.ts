/** Tokens (and S3 access keys) written straight into a test server's database. */
import { newAccessKey, newToken, type Grant } from "../../src/domain/auth";
import { loadSecretBox } from "../../src/storage/secrets";
import type { TestServers } from "./servers";

/** A token of `org` with `grants` (`tokenId`: its public id); with `s3`, also an access key pair for SigV4 (`id`, `secret`). */
export async function insertToken(s: TestServers, org: string, grants: Grant[], s3 = false): Promise<{ token: string; id: string; secret: string; tokenId: string }> {
  const { token, tokenId, secretHash } = newToken();
  const key = s3 ? newAccessKey() : undefined;
  const secretSealed = key ? loadSecretBox(s.dataDir, undefined).seal(key.secret) : undefined;
  await s.app.repo().tokens.tokenInsert({ tokenId, org, secretHash, name: "t", grants, createdAt: Date.now(), expiresAt: 0, revokedAt: 0, accessKeyId: key?.accessKeyId, secretSealed });
  return { token, id: key?.accessKeyId ?? "", secret: key?.secret ?? "", tokenId };
}
