/**
 * Character chunking: windows of `size` characters that start every `size - overlap`
 * characters; the last window is the first that reaches the end of the text. So a text
 * of 2,500 characters with size 1,000 and overlap 150 gives windows starting at 0, 850
 * and 1,700: three chunks.
 */

/** Splits text into overlapping chunks of at most `size` characters (code points). */
export function chunkText(text: string, size: number, overlap: number): string[] {
  if (size <= 0 || overlap < 0 || overlap >= size) {
    throw new RangeError(`chunk size ${size} and overlap ${overlap} do not make a forward step`);
  }
  const chars = Array.from(text);
  const chunks: string[] = [];
  const step = size - overlap;
  for (let start = 0; start < chars.length; start += step) {
    chunks.push(chars.slice(start, start + size).join(""));
    if (start + size >= chars.length) break;
  }
  return chunks;
}
