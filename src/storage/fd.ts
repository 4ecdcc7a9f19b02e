/**
 * File descriptors through the callback forms of node:fs, promised. A FileHandle
 * (fs/promises) is an object with a finalizer and a promise per call; the hot paths — an
 * upload's temporary file, a folder's sync, a worker opening an object — make several such
 * calls per object, and on the bench machine openFileHandle alone was 7.8 % of a PUT's
 * server time. A descriptor here has one owner, who closes it exactly once.
 */
import { close as closeCb, fstat as fstatCb, fsync as fsyncCb, open as openCb, read as readCb, readlink as readlinkCb, write as writeCb, type BigIntStats } from "node:fs";

export const fd = {
  open: (path: string, flags: number, mode = 0o600) => new Promise<number>((resolve, reject) => openCb(path, flags, mode, (err, n) => (err ? reject(err) : resolve(n)))),
  fsync: (n: number) => new Promise<void>((resolve, reject) => fsyncCb(n, (err) => (err ? reject(err) : resolve()))),
  close: (n: number) => new Promise<void>((resolve, reject) => closeCb(n, (err) => (err ? reject(err) : resolve()))),
  stat: (n: number) => new Promise<BigIntStats>((resolve, reject) => fstatCb(n, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st)))),
  /** Where descriptor `n` really points (Linux's /proc/self/fd). */
  target: (n: number) => new Promise<string>((resolve, reject) => readlinkCb(`/proc/self/fd/${n}`, (err, p) => (err ? reject(err) : resolve(p)))),
  read: (n: number, buffer: Buffer, offset: number, length: number, position: number) =>
    new Promise<{ bytesRead: number }>((resolve, reject) => readCb(n, buffer, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead })))),
  async writeAll(n: number, buf: Buffer): Promise<void> {
    for (let at = 0; at < buf.length; ) {
      at += await new Promise<number>((resolve, reject) => writeCb(n, buf, at, buf.length - at, null, (err, written) => (err ? reject(err) : resolve(written))));
    }
  },
};
