/**
 * Turns per key within a process: `run(key, fn)` starts `fn` once every earlier turn of the
 * same key has ended; different keys never wait for each other. The object catalog writes
 * an object's bytes and row in such turns (ObjectCatalog.objectPut).
 */
export class KeyedTurns {
  /** Per key, the end of the last turn queued (resolves, never rejects). */
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key);
    let end!: () => void;
    const mine = new Promise<void>((resolve) => (end = resolve));
    this.tails.set(key, mine);
    try {
      if (before) await before;
      return await fn();
    } finally {
      end();
      if (this.tails.get(key) === mine) this.tails.delete(key);
    }
  }

  /**
   * Runs `fn` in a turn of every key of `keys` at once, taken one key after another in
   * sorted order, so two such runs sharing keys never wait for each other in a circle.
   */
  runAll<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const from = (i: number): Promise<T> => (i === sorted.length ? fn() : this.run(sorted[i], () => from(i + 1)));
    return from(0);
  }

  /** Resolves once every turn of `key` queued so far has ended (at once when there is none). */
  async ended(key: string): Promise<void> {
    await this.tails.get(key);
  }

  /** Keys with a turn running or queued. */
  get size(): number {
    return this.tails.size;
  }
}
