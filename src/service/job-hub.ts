/**
 * One process's fan-out of job events to its watchers (WatchIngestJobs streams, SSE,
 * GetIngestStatus long polls). The process LISTENs once (the API's listener connection);
 * each NOTIFY names the range of events a committed statement appended, and the hub reads
 * those events — once, for every watcher — joined to the jobs' current rows, then hands
 * each to the watchers of its bucket. With no watcher it reads nothing.
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
  private head = 0;
  private pending: Array<[number, number]> = [];
  private reading = false;
  private readonly seen = new Set<number>();
  private closed: Error | undefined;

  constructor(
    private readonly store: EventStore,
    private readonly log: Logger,
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
    return sub;
  }

  private unlink(s: Subscription): void {
    const set = this.subs.get(s.key);
    if (!set?.delete(s)) return;
    this.count--;
    if (set.size === 0) this.subs.delete(s.key);
  }

  /** A NOTIFY on CHANNEL_EVENTS: the payload is "lo-hi", and " org bucket" when the events are of one bucket. */
  notify(payload: string): void {
    const m = /^(\d+)-(\d+)(?: (\S+) (\S+))?$/.exec(payload);
    if (!m) return;
    const lo = Number(m[1]);
    const hi = Number(m[2]);
    // Nobody here watches (that bucket): nothing to read.
    if (this.count === 0 || (m[3] !== undefined && !this.subs.has(`${m[3]}\u0000${m[4]}`))) {
      this.head = Math.max(this.head, hi);
      return;
    }
    this.pending.push([lo, hi]);
    void this.drain();
  }

  /** The listener reconnected: notifications sent meanwhile are lost, so read what followed the last one seen. */
  reconnected(): void {
    if (this.count === 0 || this.head === 0) return;
    this.pending.push([this.head + 1, Number.MAX_SAFE_INTEGER]);
    void this.drain();
  }

  /** Ends every watcher (shutdown): they are told to reconnect elsewhere. */
  close(): void {
    this.closed = new ConnectError("the server is shutting down; watch again (with resume_after) on another instance", Code.Unavailable);
    for (const set of [...this.subs.values()]) for (const s of [...set]) s.end(this.closed);
  }

  /** The (org, bucket) pairs with watchers here: the only events worth reading. */
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

  private async drain(): Promise<void> {
    if (this.reading) return;
    this.reading = true;
    try {
      while (this.pending.length > 0 && this.count > 0 && !this.closed) {
        const ranges = this.pending;
        this.pending = [];
        let lo = Number.MAX_SAFE_INTEGER;
        let hi = 0;
        for (const [a, b] of ranges) {
          lo = Math.min(lo, a);
          hi = Math.max(hi, b);
        }
        let events: JobEvent[];
        try {
          events = await this.store.range(lo, hi, READ_LIMIT, this.watchedBuckets());
        } catch (err) {
          this.log.warn("reading job events failed; retrying", { err: (err as Error).message });
          this.pending.push(...ranges);
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        // A catch-up read may stop at READ_LIMIT: the rest is read next.
        if (events.length === READ_LIMIT) this.pending.push([events[events.length - 1].seq + 1, hi]);
        this.dispatch(events);
      }
    } finally {
      this.reading = false;
    }
  }

  private dispatch(events: JobEvent[]): void {
    // One message per job per read: its latest event (each carries the job's current row).
    const latest = new Map<string, JobEvent>();
    for (const ev of events) {
      this.head = Math.max(this.head, ev.seq);
      if (this.seen.has(ev.seq)) continue;
      this.seen.add(ev.seq);
      latest.delete(ev.job.jobId);
      latest.set(ev.job.jobId, ev);
    }
    if (this.seen.size > 200_000) {
      const keep = this.head - 100_000;
      for (const s of this.seen) if (s < keep) this.seen.delete(s);
    }
    for (const ev of latest.values()) {
      const set = this.subs.get(`${ev.job.org}\u0000${ev.job.bucket}`);
      if (set) for (const s of set) s.push(ev);
    }
  }
}
