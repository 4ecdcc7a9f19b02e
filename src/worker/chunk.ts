/**
 * Character chunking: windows of `size` characters that start every `size - overlap`
 * characters; the last window is the first that reaches the end of the text. So a text
 * of 2,500 characters with size 1,000 and overlap 150 gives windows starting at 0, 850
 * and 1,700: three chunks. Characters are code points; the text is never exploded into
 * an array of one-character strings.
 */

/** How many chunks chunkText makes of `length` characters (to check caps before chunking). */
export function chunkCount(length: number, size: number, overlap: number): number {
  if (length === 0) return 0;
  if (length <= size) return 1;
  return Math.ceil((length - size) / (size - overlap)) + 1;
}

/** Splits text into overlapping chunks of at most `size` characters (code points). */
export function chunkText(text: string, size: number, overlap: number): string[] {
  if (size <= 0 || overlap < 0 || overlap >= size) {
    throw new RangeError(`chunk size ${size} and overlap ${overlap} do not make a forward step`);
  }
  // Offsets of code points in UTF-16 units; plain slicing when there is no surrogate pair.
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
  const chunks: string[] = [];
  const step = size - overlap;
  for (let start = 0; start < length; start += step) {
    chunks.push(text.slice(at(start), at(start + size)));
    if (start + size >= length) break;
  }
  return chunks;
}
