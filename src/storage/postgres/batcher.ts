/**
 * Group commit for concurrent callers: items added while `maxInFlight` batches are already
 * running wait and go together in the next one (at most `maxBatch` items). A lone caller
 * finds nothing in flight and goes at once, so it waits for nothing. Each caller is answered
 * only when its batch has answered it — after the commit that holds its row. Used by job
 * inserts (TriggerIngest) and by the worker's output-less completions.
 */

/** An item waiting in (or sent with) a batch, with how to answer its caller. */
export interface Pending<In, Out> {
  item: In;
  resolve(value: Out | PromiseLike<Out>): void;
  reject(err: unknown): void;
}

export class Batcher<In, Out> {
  private readonly waiting: Array<Pending<In, Out>> = [];
  private inFlight = 0;

  /**
   * `send` runs one batch and answers every item of it (resolve or reject). If it throws
   * instead, every item of the batch still unanswered gets that error.
   */
  constructor(
    private readonly send: (batch: Array<Pending<In, Out>>) => Promise<void>,
    private readonly limits: { maxBatch: number; maxInFlight: number },
  ) {}

  add(item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.limits.maxInFlight && this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.limits.maxBatch);
      this.inFlight++;
      // The batch serves several calls, so no single caller's deadline cancels it.
      void this.send(batch)
        .catch((err: unknown) => batch.forEach((p) => p.reject(err)))
        .finally(() => {
          this.inFlight--;
          this.flush();
        });
    }
  }
}
