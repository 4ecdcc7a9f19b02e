/**
 * The connection pool and how statements run on it, shared by the repository: checkouts
 * that survive a dropped connection, statements tied to their call's deadline (cancelled
 * with pg_cancel_backend, the connection pooled again only once the cancel has landed),
 * transactions that can choose to roll back, and keyset listings with exact counts read
 * at the same moment as their page.
 */
import { Pool, type PoolClient, type PoolConfig, type QueryResult, type QueryResultRow } from "pg";
import { DomainError } from "../../domain/errors";
import type { Page, PageParams } from "../repository";
import { isConnectionError, mapPgError } from "./pg-errors";
import { num } from "./rows";

/** Options of the repository's connection pool. */
export interface PgRepositoryOptions {
  connectionString: string;
  poolSize?: number;
  /** Fails a checkout that waits longer than this (ms) instead of hanging. */
  connectTimeoutMs?: number;
  /** Server-side statement timeout (ms). */
  statementTimeoutMs?: number;
  applicationName?: string;
  /** Share this pool (another store over the same connections) instead of opening one. */
  pool?: Pool;
}

/**
 * What a query cancelled by its call's signal throws: the signal's own reason when it is
 * an error the transport knows (a Connect deadline or cancel), else a domain Cancelled.
 */
function abortError(reason: unknown): unknown {
  if (reason instanceof Error && (reason.name === "ConnectError" || reason instanceof DomainError)) return reason;
  return new DomainError("cancelled", "the call was cancelled before its database work finished");
}

/** Runs one statement of a readTogether, answering its rows. */
export type Read = (text: string, values: unknown[]) => Promise<QueryResultRow[]>;

/** Returned by a tx() body to roll back instead of committing. */
export const ROLLBACK_ONLY = Symbol("rollback");

/** A keyset listing: equality filters, then (created_at, id) descending after the cursor. */
export interface ListSpec {
  /** Counts from job_counts + job_count_deltas instead of COUNT(*) over the table. */
  countFromCounters?: boolean;
  select: string;
  from: string;
  /** Column-qualified prefix for the listed table ("" or "r."). */
  alias: string;
  idColumn: string;
  filters: Array<[column: string, value: string | undefined]>;
  /** A column and the prefix its value must start with (counted with COUNT(*), never from counters). */
  prefix?: [column: string, value: string];
}

/**
 * The `column = $n` assignments of a partial update: one for each field `patch` sets,
 * its value (through `encode`) appended to `values`.
 */
export function setClauses<F extends string>(
  columns: Readonly<Record<F, string>>,
  patch: Partial<Record<F, unknown>>,
  values: unknown[],
  encode: (field: F, value: unknown) => unknown = (_f, v) => v,
): string[] {
  const sets: string[] = [];
  for (const [field, column] of Object.entries(columns) as Array<[F, string]>) {
    if (patch[field] === undefined) continue;
    values.push(encode(field, patch[field]));
    sets.push(`${column} = $${values.length}`);
  }
  return sets;
}

/** Rows of the newest-first walk a key-prefix page looks through before it reads the prefix's range. */
const PREFIX_WALK = 2_000;

/** A pool and the ways the repository runs statements on it. */
export class PgDb {
  readonly pool: Pool;

  constructor(opts: PgRepositoryOptions) {
    if (opts.pool) {
      this.pool = opts.pool;
      return;
    }
    const config: PoolConfig = {
      connectionString: opts.connectionString,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
      statement_timeout: opts.statementTimeoutMs ?? 30_000,
      application_name: opts.applicationName ?? "k3-ingest",
    };
    this.pool = new Pool(config);
    // An idle client losing its connection must not crash the process.
    this.pool.on("error", () => undefined);
    // Nor a client between checkout and its user's listener: pg-pool removes its own
    // listener when it hands a new client out, and when the server's last handshake message
    // and a FATAL (a shutdown terminating connections) arrive in one read, the FATAL is
    // emitted before the promise of the checkout has even settled. Every client keeps this
    // listener for its life; what a broken client means is handled where it is used (its
    // next statement fails, and withClient destroys it).
    this.pool.on("connect", (client) => client.on("error", () => undefined));
  }

  /**
   * Checks out a client for `fn`. A checked-out client that loses its connection between
   * two statements emits 'error'; the listener keeps that from crashing the process, and
   * the broken client is destroyed rather than returned to the pool.
   *
   * With a signal, the work is tied to it: when it fires — also while the checkout still
   * waits — the call fails at once and the statement running on the client is cancelled
   * with pg_cancel_backend; the client returns to the pool only after the cancel has
   * landed, so it can never hit another call's statement.
   */
  protected async withClient<T>(fn: (client: PoolClient, markBroken: (why: Error) => void) => Promise<T>, signal?: AbortSignal): Promise<T> {
    let client: PoolClient;
    try {
      client = await (signal ? this.connectWithin(signal) : this.pool.connect());
    } catch (err) {
      if (signal?.aborted) throw abortError(signal.reason);
      throw mapPgError(err);
    }
    let broken: Error | undefined;
    const onError = (err: Error) => (broken = err);
    client.on("error", onError);
    const pid = (client as unknown as { processID?: number }).processID;
    let cancelled: Promise<unknown> | undefined;
    const onAbort = () => {
      if (pid) cancelled = this.pool.query("SELECT pg_cancel_backend($1)", [pid]).catch(() => (broken ??= new Error("could not cancel the query")));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      return await fn(client, (why) => (broken ??= why));
    } catch (err) {
      if (isConnectionError(err) || (err instanceof DomainError && err.kind === "unavailable")) broken ??= err as Error;
      if (signal?.aborted) throw abortError(signal.reason);
      throw err;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      await cancelled;
      client.off("error", onError);
      // A broken client — or one whose cancel could not be sent — is destroyed, never reused.
      client.release(broken);
    }
  }

  /**
   * A pool checkout that honours the call's deadline while it waits: when the signal fires
   * first the call fails at once, and the client, once it arrives, goes back to the pool.
   */
  private connectWithin(signal: AbortSignal): Promise<PoolClient> {
    signal.throwIfAborted();
    return new Promise((resolve, reject) => {
      let settled = false;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.pool.connect().then(
        (client) => {
          signal.removeEventListener("abort", onAbort);
          if (settled) client.release();
          else {
            settled = true;
            resolve(client);
          }
        },
        (err: unknown) => {
          signal.removeEventListener("abort", onAbort);
          if (!settled) {
            settled = true;
            reject(err);
          }
        },
      );
    });
  }

  /**
   * Runs one statement. With the call's signal (it travels on the Scope) the statement is
   * tied to the call as withClient ties it: when the client's deadline passes or it goes
   * away, the call fails at once and the server-side statement is cancelled.
   */
  protected async run(text: string, values?: unknown[], signal?: AbortSignal): Promise<QueryResult> {
    if (!signal) {
      try {
        return await this.pool.query(text, values);
      } catch (err) {
        throw mapPgError(err);
      }
    }
    if (signal.aborted) throw abortError(signal.reason);
    return this.withClient(async (client) => {
      try {
        return await client.query(text, values);
      } catch (err) {
        throw mapPgError(err);
      }
    }, signal);
  }

  /** The rows a statement returns. */
  protected async q(text: string, values?: unknown[], signal?: AbortSignal): Promise<QueryResultRow[]> {
    return (await this.run(text, values, signal)).rows;
  }

  /** How many rows a statement changed. */
  protected async exec(text: string, values?: unknown[]): Promise<number> {
    return (await this.run(text, values)).rowCount ?? 0;
  }

  /**
   * Runs `fn` in a transaction; returning ROLLBACK_ONLY rolls back instead of committing.
   * With a signal, as withClient: its firing cancels the statement running and rolls back.
   */
  protected tx<T>(fn: (client: PoolClient) => Promise<T | typeof ROLLBACK_ONLY>, rolledBack: T, signal?: AbortSignal): Promise<T> {
    return this.withClient((client) => this.txOn(client, fn, rolledBack, signal), signal);
  }

  /** As tx, on a client already checked out (one that holds a session lock, say). */
  protected async txOn<T>(
    client: PoolClient,
    fn: (client: PoolClient) => Promise<T | typeof ROLLBACK_ONLY>,
    rolledBack: T,
    signal?: AbortSignal,
    begin = "BEGIN",
  ): Promise<T> {
    try {
      await client.query(begin);
      const out = await fn(client);
      if (out === ROLLBACK_ONLY) {
        await client.query("ROLLBACK");
        return rolledBack;
      }
      signal?.throwIfAborted();
      await client.query("COMMIT");
      return out;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw mapPgError(err);
    }
  }

  /**
   * Reads that must agree with each other — a page and its total — on one connection in
   * one read-only REPEATABLE READ transaction, so all of them see the same moment. (Run on
   * two connections, a commit landing between them made a page of 21 rows say "20 in all".)
   * With a signal, as withClient.
   */
  protected readTogether<T>(fn: (read: Read) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.withClient(
      (client) => this.txOn(client, () => fn(async (text, values) => (await client.query(text, values)).rows), undefined as T, signal, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
      signal,
    );
  }

  /** A page's rows and the count of all it is a page of, read at one moment (readTogether). */
  protected async rowsAndCount(page: [text: string, values: unknown[]], count: [text: string, values: unknown[]], signal?: AbortSignal): Promise<{ rows: QueryResultRow[]; total: number }> {
    return this.readTogether(async (read) => ({ rows: await read(...page), total: num((await read(...count))[0]?.n) }), signal);
  }

  /**
   * Folds a deltas table into its totals: `fold` under the transaction-level try-lock
   * `lock`, so one process at a time does it; false when another process holds the lock.
   */
  protected foldDeltas(lock: string, fold: string): Promise<boolean> {
    return this.tx(async (client) => {
      const { rows } = await client.query(lock);
      if (!rows[0].locked) return false;
      await client.query(fold);
      return true;
    }, false);
  }

  /**
   * A keyset page and its exact count, read at one moment: one statement without a key
   * prefix, the prefix's reads in one snapshot (readTogether) with one.
   */
  protected keysetPage<T>(spec: ListSpec, page: PageParams, map: (r: QueryResultRow) => T): Promise<Page<T>> {
    if (spec.prefix) return this.readTogether((read) => this.keysetRead(read, spec, page, map), page.signal);
    return this.keysetRead((text, values) => this.q(text, values, page.signal), spec, page, map);
  }

  /**
   * A keyset page and its exact count through `read`. Without a key prefix, one statement
   * holds both: the count, and the page joined beside it (a row of NULLs when the page is
   * empty); with one, the caller's `read` must share a snapshot (readTogether).
   */
  protected async keysetRead<T>(read: Read, spec: ListSpec, page: PageParams, map: (r: QueryResultRow) => T): Promise<Page<T>> {
    const a = spec.alias;
    const where: string[] = [];
    const values: unknown[] = [];
    for (const [col, value] of spec.filters) {
      if (value === undefined) continue;
      values.push(value);
      where.push(`${a}${col} = $${values.length}`);
    }
    let prefix = "";
    if (spec.prefix) {
      values.push(spec.prefix[1]);
      prefix = `starts_with(${a}${spec.prefix[0]}, $${values.length})`;
    }
    const countWhere = whereOf(prefix ? [...where, prefix] : where);
    const countValues = [...values];
    if (page.after) {
      values.push(page.after.createdAt, page.after.id);
      where.push(`(${a}created_at, ${a}${spec.idColumn}) < ($${values.length - 1}, $${values.length})`);
    }
    values.push(page.limit + 1);
    const limit = `LIMIT $${values.length}`;
    const order = `ORDER BY ${a}created_at DESC, ${a}${spec.idColumn} DESC`;
    const countText = spec.countFromCounters && !prefix
      ? `SELECT (SELECT coalesce(sum(n), 0) FROM job_counts ${countWhere}) + (SELECT coalesce(sum(n), 0) FROM job_count_deltas ${countWhere}) AS n`
      : `SELECT count(*) AS n FROM ${spec.from} ${countWhere}`;
    if (!prefix) {
      // The count's parameters are the first of the page's, numbered alike.
      const both = await read(
        `SELECT k3_count.n AS k3_total, k3_page.* FROM (${countText}) AS k3_count
         LEFT JOIN LATERAL (SELECT ${spec.select}, ${a}created_at AS k3_at, ${a}${spec.idColumn} AS k3_id FROM ${spec.from} ${whereOf(where)} ${order} ${limit}) AS k3_page ON true
         ORDER BY k3_page.k3_at DESC, k3_page.k3_id DESC`,
        values,
      );
      const rows = both.filter((r) => r.k3_id !== null);
      return { items: rows.slice(0, page.limit).map(map), more: rows.length > page.limit, total: num(both[0]?.k3_total) };
    }
    const rows = await this.prefixRows(read, spec, { where, prefix, order, limit, values }, page);
    const count = await read(countText, countValues);
    return { items: rows.slice(0, page.limit).map(map), more: rows.length > page.limit, total: num(count[0]?.n) };
  }

  /**
   * A key-prefix page. Which plan is fast depends on where the prefix's rows sit in time,
   * which no estimate knows (a prefix of old jobs is far down the newest-first walk). So:
   * the newest PREFIX_WALK rows of the other filters first (bounded), and when they do not
   * fill the page, the prefix's own index range sorted — cost growing with the prefix's
   * rows, not the table's; ids first (from the index alone when only the bucket filters),
   * and "+ 0" keeps the planner from walking the time index instead.
   */
  private async prefixRows(
    read: Read,
    spec: ListSpec,
    sql: { where: string[]; prefix: string; order: string; limit: string; values: unknown[] },
    page: PageParams,
  ): Promise<QueryResultRow[]> {
    const { where, prefix, order, limit, values } = sql;
    const a = spec.alias;
    const id = `${a}${spec.idColumn}`;
    const walked = await read(
      `SELECT * FROM (SELECT ${spec.select} FROM ${spec.from} ${whereOf(where)} ${order} LIMIT ${PREFIX_WALK}) AS ${a.replace(".", "") || "w"}
       WHERE ${prefix} ${order} ${limit}`,
      values,
    );
    if (walked.length > page.limit) return walked;
    return read(
      `SELECT ${spec.select} FROM ${spec.from} WHERE ${id} IN (
         SELECT ${id} FROM ${spec.from} ${whereOf([...where, prefix])} ORDER BY ${a}created_at + 0 DESC, ${id} || '' DESC ${limit})
       ${order}`,
      values,
    );
  }
}

const whereOf = (conds: string[]) => (conds.length ? `WHERE ${conds.join(" AND ")}` : "");
