/** S3 errors: a code S3 clients know, the HTTP status S3 gives it, and a message. */
export class S3Error extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "S3Error";
  }
}

/** Escapes text for an XML element or attribute. */
export function xmlEscape(s: string): string {
  // Control characters (keys may hold them) go as character references, as S3 writes them;
  // clients that cannot read those ask for encoding-type=url.
  // eslint-disable-next-line no-control-regex
  return s.replace(/[<>&'"\u0001-\u0008\u000b\u000c\u000d\u000e-\u001f\u007f]/g, (c) =>
    ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c] ?? `&#${c.charCodeAt(0)};`,
  );
}

/** Undoes xmlEscape (and the same entities from any S3 peer). */
export function xmlUnescape(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#x[0-9a-fA-F]+|#[0-9]+);/g, (_, e: string) =>
    e.startsWith("#")
      ? String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : Number(e.slice(1)))
      : (({ lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" })[e] as string),
  );
}

/** What S3 answers to an upload past the size limit. */
export function entityTooLarge(limit: number): S3Error {
  return new S3Error("EntityTooLarge", 413, `Your proposed upload exceeds the maximum allowed object size (${limit} bytes, K3_MAX_OBJECT_BYTES)`);
}

/** The XML body S3 sends with an error. */
export function errorXml(err: S3Error, resource: string, requestId: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${err.code}</Code><Message>${xmlEscape(err.message)}</Message><Resource>${xmlEscape(resource)}</Resource><RequestId>${xmlEscape(requestId)}</RequestId></Error>`;
}
