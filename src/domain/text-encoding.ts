/**
 * Text encodings by name: which one a pipeline's `encoding` option names (its WHATWG
 * label, as TextDecoder knows it), and text decoded in it.
 */

/**
 * The encoding a label names (windows-1252, latin1, shift_jis, gbk, utf-16le…); undefined
 * when it names none ("replacement" decodes every text to U+FFFD, so it names none either).
 */
export function textEncodingOf(label: string): string | undefined {
  try {
    const encoding = new TextDecoder(label).encoding;
    return encoding === "replacement" ? undefined : encoding;
  } catch {
    return undefined;
  }
}

/**
 * What Windows-1252 puts at bytes 0x80–0x9F (the WHATWG index; the rest of its bytes are
 * their own code points). Node 20's TextDecoder reads windows-1252 — and latin1, ascii and
 * iso-8859-1, which the standard makes the same — as ISO-8859-1, so 0x80 came out as a
 * control character instead of € (nodejs/node#56542).
 */
const WINDOWS_1252_HIGH = "€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008DŽ\u008F\u0090‘’“”•–—˜™š›œ\u009DžŸ";

/** Bytes as text in `encoding` (a name textEncodingOf gave); throws a TypeError where they are not text in it. */
export function decodeIn(encoding: string, bytes: Uint8Array): string {
  if (encoding !== "windows-1252") return new TextDecoder(encoding, { fatal: true }).decode(bytes);
  const latin1 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  return latin1.replace(/[\u0080-\u009f]/g, (c) => WINDOWS_1252_HIGH[c.charCodeAt(0) - 0x80]);
}
