/**
 * Per-token token buckets for write calls: each token may make `rate` writes a second on
 * average with bursts up to `burst`. One map lookup and a little arithmetic per call; the
 * map forgets idle tokens when it grows large.
 */

/** Takes one write from a caller's bucket. */
export interface RateLimiter {
  /** 0 when the call may go ahead, otherwise the seconds until it could. */
  take(key: string): number;
}

/** A limiter of `rate` calls per second with bursts of `burst`. */
export function createRateLimiter(rate: number, burst: number, now: () => number = Date.now): RateLimiter {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    take(key) {
      const t = now();
      let b = buckets.get(key);
      if (!b) {
        if (buckets.size >= 100_000) buckets.clear();
        b = { tokens: burst, at: t };
        buckets.set(key, b);
      }
      b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
      b.at = t;
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return 0;
      }
      return Math.max(1, Math.ceil((1 - b.tokens) / rate));
    },
  };
}
