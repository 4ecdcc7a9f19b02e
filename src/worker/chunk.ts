/**
 * Chunking that keeps words whole: each chunk is at most `size` characters (code points)
 * and ends, by preference, at a paragraph break, else after a sentence (looking back no
 * further than half a step for either), else between two words; only a word longer than a
 * chunk is cut.
 * The next chunk starts `overlap` characters before the end, moved forward to the start of
 * a word (after a paragraph break it starts with the next paragraph, not overlapping). Each chunk carries its offsets in the text (code points, end exclusive, without
 * the whitespace around it). The text is never exploded into one-character strings.
 */

/** One chunk and where it lies in the text. */
export interface Chunk {
  text: string;
  start: number;
  end: number;
}

/** How many chunks fixed windows would make of `length` characters (the estimate checked before chunking). */
export function chunkCount(length: number, size: number, overlap: number): number {
  if (length === 0) return 0;
  if (length <= size) return 1;
  return Math.ceil((length - size) / (size - overlap)) + 1;
}

const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13 || c === 0xa0 || c === 0x3000 || c === 0x2028 || c === 0x2029;
const isSentenceEnd = (c: number) => c === 46 || c === 33 || c === 63 || c === 0x3002; // . ! ? 。

/**
 * Splits text into chunks of at most `size` characters that overlap by about `overlap`.
 * `lines`: every line break counts as a paragraph break (CSV rows stay whole and apart).
 */
export function chunkSpans(text: string, size: number, overlap: number, lines = false): Chunk[] {
  if (size <= 0 || overlap < 0 || overlap >= size) {
    throw new RangeError(`chunk size ${size} and overlap ${overlap} do not make a forward step`);
  }
  // Offsets of code points in UTF-16 units; plain indexes when there is no surrogate pair.
  let offsets: Int32Array | undefined;
  let length = text.length;
  if (/[\ud800-\udfff]/.test(text)) {
    offsets = new Int32Array(text.length + 1);
    let n = 0;
    for (let i = 0; i < text.length; i++) {
      offsets[n++] = i;
      const c = text.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) i++;
    }
    offsets[n] = text.length;
    length = n;
  }
  const at = (cp: number) => (offsets ? offsets[Math.min(cp, length)] : Math.min(cp, length));
  const code = (cp: number) => (cp < 0 || cp >= length ? 32 : text.charCodeAt(at(cp)));
  // A chunk never ends before this many characters past its overlap: every step moves on.
  const minStep = Math.max(1, Math.floor((size - overlap) / 2));

  /**
   * The best end in [floor, hard]: a paragraph break, a sentence end, a space; else the last
   * space after `start` (a shorter chunk rather than a cut word); else `hard`.
   */
  function bestEnd(start: number, floor: number, hard: number): number {
    for (let p = hard; p >= floor; p--) if (code(p - 1) === 10 && (lines || code(p - 2) === 10)) return p;
    for (let p = hard; p >= floor; p--) if (isSpace(code(p)) && isSentenceEnd(code(p - 1))) return p;
    if (isSpace(code(hard))) return hard;
    for (let p = hard; p > start; p--) if (isSpace(code(p - 1))) return p;
    return hard;
  }

  const chunks: Chunk[] = [];
  let s = 0;
  while (s < length && isSpace(code(s))) s++;
  while (s < length) {
    let e = Math.min(s + size, length);
    if (e < length) e = bestEnd(s, Math.min(e, s + overlap + minStep), e);
    let te = e;
    while (te > s && isSpace(code(te - 1))) te--;
    if (te > s) chunks.push({ text: text.slice(at(s), at(te)), start: s, end: te });
    if (e >= length) break;
    // A chunk that ended at a paragraph break (or a page: pages are paragraphs) is not
    // overlapped into: the next one starts with the next paragraph.
    const paragraph = code(e - 1) === 10 && (lines || code(e - 2) === 10);
    let next = paragraph ? e : Math.max(s + 1, e - overlap);
    // Into the overlap at the start of a word, never mid-word.
    while (next < e && !isSpace(code(next - 1))) next++;
    while (next < length && isSpace(code(next))) next++;
    s = next;
  }
  return chunks;
}

/** The chunks' texts only. */
export function chunkText(text: string, size: number, overlap: number): string[] {
  return chunkSpans(text, size, overlap).map((c) => c.text);
}
