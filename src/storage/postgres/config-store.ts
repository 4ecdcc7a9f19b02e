/**
 * Pipelines and rules, with the short cache TriggerIngest reads them through (config-cache.ts,
 * shared with the buckets' rows). Every write here clears the cache and NOTIFYs the other
 * instances (CHANNEL_CONFIG), whose listeners call invalidateConfig().
 */
import type { Pool } from "pg";
import type { Scope } from "../../domain/job";
import type { BoundRule, Pipeline, PipelineFields, Rule, RuleFields } from "../../domain/pipeline";
import type { Page, PageParams, PipelineDeleted, PipelineDeleteOptions, PipelineFilter, RuleFilter } from "../repository";
import * as SQL from "./sql";
import { PgDb, ROLLBACK_ONLY, setClauses } from "./db";
import { num, toPipeline, toRule } from "./rows";
import { ConfigCache } from "./config-cache";

/** Column names the partial updates may write, by domain field. */
const RULE_UPDATE_COLUMNS: Readonly<Record<keyof RuleFields, string>> = {
  sourceId: "source_id",
  pipelineId: "pipeline_id",
  name: "name",
  description: "description",
  includePatterns: "include_patterns",
  excludePatterns: "exclude_patterns",
  includeMimeTypes: "include_mime_types",
  excludeMimeTypes: "exclude_mime_types",
  minSizeBytes: "min_size_bytes",
  maxSizeBytes: "max_size_bytes",
  enabled: "enabled",
  priority: "priority",
};

const PIPELINE_UPDATE_COLUMNS: Readonly<Record<keyof PipelineFields, string>> = {
  name: "name",
  description: "description",
  template: "template",
  options: "options",
  storeEntityId: "store_entity_id",
  storeEntityKind: "store_entity_kind",
};

export class ConfigStore extends PgDb {
  /** Pipelines, rule sets and (for BucketStore) buckets' rows, dropped together by invalidateConfig. */
  readonly cache = new ConfigCache();
  private readonly pipelineCache = this.cache.kind<Pipeline | undefined>();
  private readonly rulesCache = this.cache.kind<BoundRule[]>();

  constructor(pool: Pool) {
    super({ connectionString: "", pool });
  }

  async ruleInsert(rule: Rule): Promise<BoundRule> {
    await this.q(SQL.RULE_INSERT, [
      rule.ruleId,
      rule.bucket,
      rule.sourceId,
      rule.pipelineId,
      rule.name,
      rule.description,
      rule.includePatterns,
      rule.excludePatterns,
      rule.includeMimeTypes,
      rule.excludeMimeTypes,
      rule.minSizeBytes,
      rule.maxSizeBytes,
      rule.enabled,
      rule.priority,
      rule.createdAt,
      rule.org,
    ]);
    await this.configChanged(rule);
    const stored = await this.ruleGetById(rule, rule.ruleId);
    if (!stored) throw new Error(`rule ${rule.ruleId} vanished right after insert`);
    return stored;
  }

  async ruleGetById(scope: Scope, ruleId: string): Promise<BoundRule | undefined> {
    const rows = await this.q(SQL.RULE_GET_BY_ID, [scope.org, scope.bucket, ruleId], scope.signal);
    return rows[0] ? toRule(rows[0]) : undefined;
  }

  ruleList(filter: RuleFilter, page: PageParams): Promise<Page<BoundRule>> {
    return this.keysetPage(
      {
        select: SQL.RULE_COLUMNS,
        from: SQL.RULE_FROM,
        alias: "r.",
        idColumn: "rule_id",
        filters: [
          ["org", filter.org],
          ["bucket", filter.bucket],
          ["source_id", filter.sourceId],
          ["pipeline_id", filter.pipelineId],
        ],
      },
      page,
      toRule,
    );
  }

  /** The enabled rules of a bucket that apply to objects without a source (cached). */
  ruleListEnabledForDirect(scope: Scope): Promise<BoundRule[]> {
    return this.rulesCache.get(`${scope.org}/${scope.bucket}/*`, async () =>
      (await this.q(SQL.RULE_LIST_ENABLED_DIRECT, [scope.org, scope.bucket], scope.signal)).map(toRule),
    );
  }

  /**
   * The enabled rules that apply to objects of a source: its own and the bucket-wide ones
   * (cached; an upload reads its bucket's internal source's on every PUT).
   */
  ruleListEnabledForSource(scope: Scope, sourceId: string): Promise<BoundRule[]> {
    return this.rulesCache.get(`${scope.org}/${scope.bucket}/${sourceId}`, async () =>
      (await this.q(SQL.RULE_LIST_ENABLED_FOR_SOURCE, [scope.org, scope.bucket, sourceId], scope.signal)).map(toRule),
    );
  }

  /** Forgets cached pipelines, rules and bucket rows (a write here or a NOTIFY from another instance). */
  invalidateConfig(): void {
    this.cache.invalidate();
  }

  /** Clears this instance's cache and tells the others that a bucket's configuration or row changed. */
  async configChanged(scope: Scope): Promise<void> {
    this.invalidateConfig();
    await this.q("SELECT pg_notify($1, $2)", [SQL.CHANNEL_CONFIG, `${scope.org}/${scope.bucket}`]).catch(() => undefined);
  }

  /** Writes the given fields; undefined when the rule does not exist. */
  async ruleUpdate(
    scope: Scope,
    ruleId: string,
    patch: Partial<RuleFields>,
    nowMs: number,
  ): Promise<BoundRule | undefined> {
    const values: unknown[] = [scope.org, scope.bucket, ruleId, nowMs];
    const sets = setClauses(RULE_UPDATE_COLUMNS, patch, values);
    const rows = await this.q(
      `UPDATE rules SET ${[...sets, "updated_at = $4"].join(", ")} WHERE org = $1 AND bucket = $2 AND rule_id = $3 RETURNING rule_id`,
      values,
    );
    await this.configChanged(scope);
    return rows[0] ? this.ruleGetById(scope, ruleId) : undefined;
  }

  async ruleDelete(scope: Scope, ruleId: string): Promise<boolean> {
    const rows = await this.q(`${SQL.RULE_DELETE} RETURNING rule_id`, [scope.org, scope.bucket, ruleId], scope.signal);
    await this.configChanged(scope);
    return rows.length > 0;
  }

  /** How many rules a bucket holds and how many glob characters they carry, leaving out `exceptRuleId`. */
  async ruleBucketUsage(scope: Scope, exceptRuleId = ""): Promise<{ rules: number; globChars: number }> {
    const rows = await this.q(SQL.RULE_BUCKET_USAGE, [scope.org, scope.bucket, exceptRuleId], scope.signal);
    return { rules: num(rows[0]?.rules), globChars: num(rows[0]?.glob_chars) };
  }

  async pipelineInsert(pipeline: Pipeline): Promise<Pipeline> {
    const rows = await this.q(SQL.PIPELINE_INSERT, [
      pipeline.pipelineId,
      pipeline.bucket,
      pipeline.name,
      pipeline.description,
      pipeline.template,
      JSON.stringify(pipeline.options),
      pipeline.storeEntityId,
      pipeline.storeEntityKind,
      pipeline.createdAt,
      pipeline.org,
    ]);
    return toPipeline(rows[0]);
  }

  /** A pipeline (cached). */
  pipelineGetById(scope: Scope, pipelineId: string): Promise<Pipeline | undefined> {
    return this.pipelineCache.get(
      `${scope.org}/${scope.bucket}/${pipelineId}`,
      async () => {
        const rows = await this.q(SQL.PIPELINE_GET_BY_ID, [scope.org, scope.bucket, pipelineId], scope.signal);
        return rows[0] ? toPipeline(rows[0]) : undefined;
      },
      (p) => p !== undefined,
    );
  }

  pipelineList(filter: PipelineFilter, page: PageParams): Promise<Page<Pipeline>> {
    return this.keysetPage(
      {
        select: SQL.PIPELINE_COLUMNS,
        from: "pipelines",
        alias: "",
        idColumn: "pipeline_id",
        filters: [
          ["org", filter.org],
          ["bucket", filter.bucket],
          ["store_entity_kind", filter.storeEntityKind],
          ["store_entity_id", filter.storeEntityId],
        ],
      },
      page,
      toPipeline,
    );
  }

  async pipelineUpdate(
    scope: Scope,
    pipelineId: string,
    patch: Partial<PipelineFields>,
    nowMs: number,
  ): Promise<Pipeline | undefined> {
    const values: unknown[] = [scope.org, scope.bucket, pipelineId, nowMs];
    const sets = setClauses(PIPELINE_UPDATE_COLUMNS, patch, values, (field, v) => (field === "options" ? JSON.stringify(v) : v));
    const rows = await this.q(
      `UPDATE pipelines SET ${[...sets, "updated_at = $4"].join(", ")} WHERE org = $1 AND bucket = $2 AND pipeline_id = $3 RETURNING ${SQL.PIPELINE_COLUMNS}`,
      values,
    );
    await this.configChanged(scope);
    return rows[0] ? toPipeline(rows[0]) : undefined;
  }

  /** Deletes a pipeline (with its jobs and outputs unless kept); the ids of the rules that bind it when they stop it. */
  async pipelineDelete(scope: Scope, pipelineId: string, how: PipelineDeleteOptions): Promise<PipelineDeleted | "not_found" | string[]> {
    let answer: PipelineDeleted | "not_found" | string[] = "not_found";
    const args = [scope.org, scope.bucket, pipelineId];
    await this.tx(async (client) => {
      const counts = (await client.query(SQL.PIPELINE_OUTPUT_COUNTS, args)).rows[0];
      const found: PipelineDeleted = { jobs: num(counts.jobs), chunks: num(counts.chunks), rows: num(counts.rows), kept: how.keepOutputs };
      if (!how.keepOutputs && !how.validateOnly) for (const sql of SQL.PIPELINE_DELETE_OUTPUTS) await client.query(sql, args);
      // Last, and only while no rule binds it (checked in the same statement).
      if ((await client.query(SQL.PIPELINE_DELETE, args)).rowCount === 0) {
        const exists = (await client.query("SELECT 1 FROM pipelines WHERE org = $1 AND bucket = $2 AND pipeline_id = $3", args)).rowCount;
        answer = exists ? (await client.query(SQL.PIPELINE_BINDING_RULES, args)).rows.map((r) => r.rule_id as string) : "not_found";
        return ROLLBACK_ONLY;
      }
      answer = found;
      return how.validateOnly ? ROLLBACK_ONLY : true;
    }, false);
    if (typeof answer === "object" && !Array.isArray(answer) && !how.validateOnly) await this.configChanged(scope);
    return answer;
  }
}
