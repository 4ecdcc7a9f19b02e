/**
 * An organization's credentials (migration 025): a payload's secret parts sealed, its
 * identifying parts (an access key id, a username, an expiry) in the clear for lists. An
 * external S3 source names one by id in its config; deleting one a source names is refused.
 */
import type { Pool } from "pg";
import type { Page, PageParams } from "../repository";
import { PgDb } from "./db";
import { num } from "./rows";
import { SOURCES_USING_CREDENTIAL } from "./sql";

/** A stored credential. `provider` and `credentialType` are lower-case names ("external_s3", "access_key"). */
export interface StoredCredential {
  credentialId: string;
  org: string;
  provider: string;
  credentialType: string;
  displayName: string;
  sourceId: string;
  isPrimary: boolean;
  /** The payload's fields that are not secret. */
  publicData: Record<string, string>;
  /** The payload's secret fields as JSON, sealed (base64). */
  secretSealed: string;
  createdAt: number;
  updatedAt: number;
}

const COLUMNS = "credential_id, org, provider, credential_type, display_name, source_id, is_primary, public_data, secret_sealed, created_at, updated_at";

function toCredential(r: Record<string, unknown>): StoredCredential {
  return {
    credentialId: r.credential_id as string,
    org: r.org as string,
    provider: r.provider as string,
    credentialType: r.credential_type as string,
    displayName: r.display_name as string,
    sourceId: r.source_id as string,
    isPrimary: r.is_primary as boolean,
    publicData: (r.public_data ?? {}) as Record<string, string>,
    secretSealed: r.secret_sealed as string,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

export class CredentialStore extends PgDb {
  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  async credentialInsert(c: StoredCredential): Promise<void> {
    await this.q(
      `INSERT INTO credentials (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $10)`,
      [c.credentialId, c.org, c.provider, c.credentialType, c.displayName, c.sourceId, c.isPrimary, JSON.stringify(c.publicData), c.secretSealed, c.createdAt],
    );
  }

  async credentialGet(org: string, credentialId: string, signal?: AbortSignal): Promise<StoredCredential | undefined> {
    const rows = await this.q(`SELECT ${COLUMNS} FROM credentials WHERE org = $1 AND credential_id = $2`, [org, credentialId], signal);
    return rows[0] ? toCredential(rows[0]) : undefined;
  }

  /** The organization's credentials, oldest first, narrowed to a provider and a source when given. */
  async credentialList(filter: { org: string; provider: string; sourceId: string }, page: PageParams): Promise<Page<StoredCredential>> {
    const values: unknown[] = [filter.org, filter.provider, filter.sourceId];
    const where = "org = $1 AND ($2 = '' OR provider = $2) AND ($3 = '' OR source_id = $3)";
    let after = "";
    if (page.after) {
      values.push(page.after.createdAt, page.after.id);
      after = "AND (created_at, credential_id) > ($4, $5)";
    }
    const { rows, total } = await this.rowsAndCount(
      [`SELECT ${COLUMNS} FROM credentials WHERE ${where} ${after} ORDER BY created_at, credential_id LIMIT ${page.limit + 1}`, values],
      [`SELECT count(*) AS n FROM credentials WHERE ${where}`, values.slice(0, 3)],
      page.signal,
    );
    return { items: rows.slice(0, page.limit).map(toCredential), more: rows.length > page.limit, total };
  }

  /** Deletes a credential unless sources sign with it: "deleted", "not_found", or the ids of those sources. */
  async credentialDelete(org: string, credentialId: string): Promise<"deleted" | "not_found" | { usedBy: string[] }> {
    return this.tx(async (client) => {
      const found = await client.query("SELECT 1 FROM credentials WHERE org = $1 AND credential_id = $2 FOR UPDATE", [org, credentialId]);
      if (!found.rowCount) return "not_found" as const;
      const using = await client.query(SOURCES_USING_CREDENTIAL, [org, credentialId]);
      if (using.rowCount) return { usedBy: using.rows.map((r) => r.source_id as string) };
      await client.query("DELETE FROM credentials WHERE org = $1 AND credential_id = $2", [org, credentialId]);
      return "deleted" as const;
    }, "not_found");
  }
}
