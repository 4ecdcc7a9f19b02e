/** API tokens (hashes only) and their S3 access keys; writes tell every instance (CHANNEL_TOKENS). */
import type { Pool } from "pg";
import type { StoredToken } from "../../domain/auth";
import * as SQL from "./sql";
import { PgDb, ROLLBACK_ONLY } from "./db";
import { toToken } from "./rows";

export class TokenStore extends PgDb {
  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  async tokenInsert(t: StoredToken): Promise<void> {
    await this.q(SQL.TOKEN_INSERT, [t.tokenId, t.org, t.secretHash, t.name, JSON.stringify(t.grants), t.createdAt, t.expiresAt, t.accessKeyId ?? null, t.secretSealed ?? null]);
    // API instances cache unknown tokens briefly; tell them this one exists now.
    await this.q("SELECT pg_notify($1, $2)", [SQL.CHANNEL_TOKENS, t.tokenId]);
  }

  async tokenFindByHash(secretHash: Buffer): Promise<StoredToken | undefined> {
    const rows = await this.q(SQL.TOKEN_FIND_BY_HASH, [secretHash]);
    return rows[0] ? toToken(rows[0]) : undefined;
  }

  /** The token holding an S3 access key id. */
  async tokenFindByAccessKey(accessKeyId: string): Promise<StoredToken | undefined> {
    const rows = await this.q(SQL.TOKEN_FIND_BY_ACCESS_KEY, [accessKeyId]);
    return rows[0] ? toToken(rows[0]) : undefined;
  }

  /** A token by its public id (the token a presigned URL names). */
  async tokenFindById(tokenId: string): Promise<StoredToken | undefined> {
    const rows = await this.q(`SELECT ${SQL.TOKEN_COLUMNS} FROM api_tokens WHERE token_id = $1`, [tokenId]);
    return rows[0] ? toToken(rows[0]) : undefined;
  }

  async tokenList(org?: string): Promise<StoredToken[]> {
    const rows = await this.q(
      `SELECT ${SQL.TOKEN_COLUMNS} FROM api_tokens ${org ? "WHERE org = $1" : ""} ORDER BY org, created_at, token_id`,
      org ? [org] : [],
    );
    return rows.map(toToken);
  }

  /** Revokes a token; false when there is no such token. Tells every API instance at once. */
  async tokenRevoke(tokenId: string, now: number): Promise<boolean> {
    const rows = await this.q(SQL.TOKEN_REVOKE, [tokenId, now]);
    if (rows.length > 0) await this.q("SELECT pg_notify($1, $2)", [SQL.CHANNEL_TOKENS, tokenId]);
    return rows.length > 0;
  }

  /**
   * Inserts `token` only when the table holds no token at all (first start); true when it
   * did. Safe when several instances start together.
   */
  async tokenInsertIfNone(t: StoredToken): Promise<boolean> {
    return this.tx(async (client) => {
      await client.query(SQL.TOKEN_BOOTSTRAP_LOCK);
      const { rows } = await client.query("SELECT EXISTS (SELECT 1 FROM api_tokens) AS any");
      if (rows[0].any) return ROLLBACK_ONLY;
      await client.query(SQL.TOKEN_INSERT, [t.tokenId, t.org, t.secretHash, t.name, JSON.stringify(t.grants), t.createdAt, t.expiresAt, null, null]);
      return true;
    }, false);
  }
}
