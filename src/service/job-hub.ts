/**
 * One process's fan-out of job events to its watchers (WatchIngestJobs streams, SSE,
 * GetIngestStatus long polls). While it has watchers, the hub reads the events committed
 * since its last read every POLL_MS — one small read for all of them, whatever their
 * number — and the events of watched buckets joined to the jobs' current rows, then hands
 * each to the watchers of its bucket. With no watcher it reads nothing. It polls rather
 * than LISTENs because a NOTIFY in every job transaction serialises their commits (it
 * halved single-row job inserts when measured); polling costs the job path nothing.
 *
 * A watcher's queue is bounded: one that falls MAX_QUEUE events behind is ended with
 * RESOURCE_EXHAUSTED (and the resume point it had reached) instead of growing memory.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Scope } from "../domain/job";
import type { Logger } from "../log";
import type { EventStore, JobEvent } from "../storage/postgres/event-store";

/** How far behind a watcher may fall before it is dropped. */
export const MAX_QUEUE = 1000;
/** Events read per statement when catching up. */
const READ_LIMIT = 5000;
/** How often a hub with watchers reads new events (the latency a watcher sees, at most). */
const POLL_MS = 25;
/** How long a skipped event number is looked for again (a transaction still in flight). */
const HOLE_MS = 30_000;
const MAX_HOLES = 10_000;
/** A hub that starts reading looks back this many events, so nothing that committed late is missed. */
const COLD_LOOKBACK = 500;

/** A watcher's view of the events of one bucket, pulled as an async iterator. */
export class Subscription {
  private readonly queue: JobEvent[] = [];
  private wake: (() => void) | undefined;
  private ended: Error | undefined;
  /** The seq of the last event taken from the queue. */
  lastSeq = 0;

  constructor(
    readonly key: string,
    private readonly unlink: (s: Subscription) => void,
  ) {}

  /** Called by the hub. */
  push(ev: JobEvent): void {
    if (this.ended) return;
    if (this.queue.length >= MAX_QUEUE) {
      // What it has not taken is dropped too: its resume point is the last event it took.
      this.queue.length = 0;
      this.end(
        new ConnectError(
          `this watcher fell ${MAX_QUEUE} events behind and was dropped; watch again with resume_after "${this.lastSeq}" (or Last-Event-ID) to continue where it stopped`,
          Code.ResourceExhausted,
        ),
      );
      return;
    }
    this.queue.push(ev);
    this.wake?.();
  }

  /** Ends the subscription: the iterator throws `err` once the queue is drained (or returns, without one). */
  end(err?: Error): void {
    if (this.ended) return;
    this.ended = err ?? new Error("closed");
    (this.ended as Error & { clean?: boolean }).clean = err === undefined;
    this.unlink(this);
    this.wake?.();
  }

  /** The next event, or undefined when `signal` aborts first. Throws the reason the hub ended it. */
  async next(signal: AbortSignal, timeoutMs?: number): Promise<JobEvent | undefined> {
    for (;;) {
      const ev = this.queue.shift();
      if (ev) {
        this.lastSeq = Math.max(this.lastSeq, ev.seq);
        return ev;
      }
      if (this.ended) {
        if ((this.ended as Error & { clean?: boolean }).clean) return undefined;
        throw this.ended;
      }
      if (signal.aborted) return undefined;
      const woke = await new Promise<boolean>((resolve) => {
        const onAbort = () => resolve(false);
        const timer = timeoutMs === undefined ? undefined : setTimeout(() => resolve(false), timeoutMs);
        signal.addEventListener("abort", onAbort, { once: true });
        this.wake = () => {
          if (timer) clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          resolve(true);
        };
      });
      this.wake = undefined;
      if (!woke) return undefined;
    }
  }
}

export class JobHub {
  private readonly subs = new Map<string, Set<Subscription>>();
  private count = 0;
  /** The newest event number read; 0 while the hub is cold (no watcher since it last idled). */
  private head = 0;
  /** Numbers skipped by a read (a transaction still in flight, or rolled back) and since when. */
  private readonly holes = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private closed: Error | undefined;

  constructor(
    private readonly store: EventStore,
    private readonly log: Logger,
    private readonly pollMs = POLL_MS,
  ) {}

  /** Watchers in this process. */
  get watchers(): number {
    return this.count;
  }

  /** Starts receiving the events of a bucket. */
  subscribe(scope: Scope): Subscription {
    const key = `${scope.org}\u0000${scope.bucket}`;
    const sub = new Subscription(key, (s) => this.unlink(s));
    if (this.closed) {
      sub.end(this.closed);
      return sub;
    }
    let set = this.subs.get(key);
    if (!set) this.subs.set(key, (set = new Set()));
    set.add(sub);
    this.count++;
    this.timer ??= setTimeout(() => void this.poll(), 0);
    return sub;
  }

  private unlink(s: Subscription): void {
    const set = this.subs.get(s.key);
    if (!set?.delete(s)) return;
    this.count--;
    if (set.size === 0) this.subs.delete(s.key);
  }

  /** Ends every watcher (shutdown): they are told to reconnect elsewhere. */
  close(): void {
    this.closed = new ConnectError("the server is shutting down; watch again (with resume_after) on another instance", Code.Unavailable);
    for (const set of [...this.subs.values()]) for (const s of [...set]) s.end(this.closed);
    if (this.timer) clearTimeout(this.timer);
  }

  /** The (org, bucket) pairs with watchers here: the only events worth reading in full. */
  private watchedBuckets(): { orgs: string[]; names: string[] } {
    const orgs: string[] = [];
    const names: string[] = [];
    for (const key of this.subs.keys()) {
      const [org, bucket] = key.split("\u0000");
      orgs.push(org);
      names.push(bucket);
    }
    return { orgs, names };
  }

  /**
   * One read of what committed since the last: the numbers after `head` and the holes left
   * by earlier reads. A number skipped now may belong to a transaction still in flight, so
   * it is looked for again on every read for HOLE_MS.
   */
  private async poll(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    try {
      if (this.count === 0) {
        // Idle: no reads at all; the next watcher starts from the then newest events.
        this.head = 0;
        this.holes.clear();
        return;
      }
      if (this.head === 0) this.head = Math.max(0, (await this.store.bounds()).head - COLD_LOOKBACK);
      // A read that hits READ_LIMIT is followed by the next at once.
      for (let found = READ_LIMIT; found === READ_LIMIT; ) {
        const holes = [...this.holes.keys()];
        const events = await this.store.newer(this.head, holes, READ_LIMIT);
        found = events.filter((e) => e.seq > this.head).length;
        const now = Date.now();
        for (const seq of holes) if (now - (this.holes.get(seq) ?? now) > HOLE_MS) this.holes.delete(seq);
        const wanted: number[] = [];
        for (const e of events) {
          if (e.seq > this.head) {
            for (let gap = this.head + 1; gap < e.seq && this.holes.size < MAX_HOLES; gap++) this.holes.set(gap, now);
            this.head = e.seq;
          } else {
            this.holes.delete(e.seq);
          }
          if (this.subs.has(`${e.org}\u0000${e.bucket}`)) wanted.push(e.seq);
        }
        if (wanted.length) this.dispatch(await this.store.bySeq(wanted, this.watchedBuckets()));
      }
    } catch (err) {
      this.log.warn("reading job events failed; retrying", { err: (err as Error).message });
    } finally {
      this.polling = false;
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      if (this.count > 0 && !this.closed) this.timer = setTimeout(() => void this.poll(), this.pollMs);
    }
  }

  private dispatch(events: JobEvent[]): void {
    // One message per job per read: its latest event (each carries the job's current row).
    const latest = new Map<string, JobEvent>();
    for (const ev of events) {
      latest.delete(ev.job.jobId);
      latest.set(ev.job.jobId, ev);
    }
    for (const ev of latest.values()) {
      const set = this.subs.get(`${ev.job.org}\u0000${ev.job.bucket}`);
      if (set) for (const s of set) s.push(ev);
    }
  }
}
