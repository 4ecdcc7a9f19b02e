/**
 * The short cache of what changes rarely and is read on every call: pipelines and rule sets
 * (TriggerIngest, uploads, discoveries) and buckets' own rows (every request of the byte
 * plane). Every write of those clears it here and NOTIFYs the other instances
 * (CHANNEL_CONFIG), whose listeners clear theirs; the TTL bounds what a lost notification
 * can leave behind (a listener that reconnects clears it too).
 */

/** How long an entry is served without asking the database again. */
const CONFIG_CACHE_TTL_MS = 5_000;
/** Entries a kind may hold before it starts over. */
const CONFIG_CACHE_MAX = 10_000;

type Entries<T> = Map<string, { value: T; at: number }>;

/** One kind of cached value (pipelines, rule sets, bucket rows), keyed by the caller. */
export interface CacheKind<T> {
  /**
   * `load()`'s value, from the cache while fresh. Kept only when `keep(value)` holds (a
   * lookup that found nothing is not kept, so a create is seen at once) and no invalidation
   * landed while the load ran: the value may predate that write, and would otherwise outlive
   * it by a whole TTL.
   */
  get(key: string, load: () => Promise<T>, keep?: (value: T) => boolean): Promise<T>;
}

export class ConfigCache {
  /** Counts invalidations: a read that an invalidation overtook is not kept. */
  private generation = 0;
  private readonly kinds: Array<Entries<unknown>> = [];

  /** A new kind of cached value, cleared with the others. */
  kind<T>(): CacheKind<T> {
    const entries: Entries<T> = new Map();
    this.kinds.push(entries as Entries<unknown>);
    return {
      get: async (key, load, keep = () => true) => {
        const hit = entries.get(key);
        if (hit && Date.now() - hit.at < CONFIG_CACHE_TTL_MS) return hit.value;
        const generation = this.generation;
        const value = await load();
        if (generation === this.generation && keep(value)) {
          if (entries.size >= CONFIG_CACHE_MAX) entries.clear();
          entries.set(key, { value, at: Date.now() });
        }
        return value;
      },
    };
  }

  /** Forgets every cached value (a write here or a NOTIFY from another instance). */
  invalidate(): void {
    this.generation++;
    for (const entries of this.kinds) entries.clear();
  }
}
