/**
 * Waiting for a full stream to drain. A peer that stops reading and then goes away never
 * drains the stream it left: waiting for "drain" alone parks the writer for good, with
 * whatever it holds (a download's file descriptor, a watch's subscription). So the wait
 * also ends when the stream closes or its call is cancelled; the writer then sees the
 * stream gone and stops.
 */
import type { EventEmitter } from "node:events";

/** Resolves when `stream` drains, or on any of `gone`. */
export function drainedOrGone(stream: EventEmitter, gone: readonly string[] = ["close"]): Promise<void> {
  return new Promise((resolve) => {
    const events = ["drain", ...gone];
    const done = () => {
      for (const e of events) stream.off(e, done);
      resolve();
    };
    for (const e of events) stream.on(e, done);
  });
}
