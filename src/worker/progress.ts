/**
 * A running attempt's progress, published at a bounded rate: the counters and stage a
 * pipeline reports are kept in memory and written at most once per interval, the first
 * time only once the job has run for an interval — so a job shorter than that writes no
 * progress at all, and a long one shows its stage within an interval of reaching it.
 */
import type { JobProgress } from "../domain/job";

/** What a pipeline reports: its counters so far and, optionally, its stage. */
export interface ProgressReport {
  chunksCreated?: number;
  embeddingsCreated?: number;
  stage?: string;
  done?: number;
  total?: number;
  unit?: string;
}

/** The full state one progress write carries. */
export interface ProgressState {
  counters: { chunksCreated: number; embeddingsCreated: number };
  progress: JobProgress;
}

export class ProgressReporter {
  private state: ProgressState = { counters: { chunksCreated: 0, embeddingsCreated: 0 }, progress: { stage: "", done: 0, total: 0, unit: "" } };
  private dirty = false;
  private last: number;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private readonly startedAt: number;

  constructor(
    private readonly write: (s: ProgressState) => Promise<unknown>,
    private readonly intervalMs: number,
    private readonly now: () => number,
  ) {
    this.last = this.startedAt = now();
  }

  /** Records a report; it is written now if an interval has passed since the last write, else at the end of it. */
  report(r: ProgressReport): void {
    if (this.stopped) return;
    const c = this.state.counters;
    const p = this.state.progress;
    const stageChanged = r.stage !== undefined && r.stage !== p.stage;
    this.state = {
      counters: { chunksCreated: r.chunksCreated ?? c.chunksCreated, embeddingsCreated: r.embeddingsCreated ?? c.embeddingsCreated },
      progress: {
        stage: r.stage ?? p.stage,
        done: r.done ?? (stageChanged ? 0 : p.done),
        total: r.total ?? (stageChanged ? 0 : p.total),
        unit: r.unit ?? (stageChanged ? "" : p.unit),
      },
    };
    this.dirty = true;
    const wait = this.last + this.intervalMs - this.now();
    if (wait <= 0) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.dirty || this.stopped) return;
    this.dirty = false;
    this.last = this.now();
    const s = this.state;
    this.writing = this.writing.then(() => this.write(s)).catch(() => undefined);
  }

  /**
   * Stops publishing and resolves when the write in flight, if any, is done. With `last`
   * (the stage the engine enters next, "writing"), a job that has run for an interval or
   * more writes it first; a shorter one writes nothing.
   */
  async stop(last?: ProgressReport): Promise<unknown> {
    if (last && !this.stopped && this.now() - this.startedAt >= this.intervalMs) {
      this.report(last);
      this.last = 0;
      this.flush();
    }
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    return this.writing;
  }
}
