/**
 * ListObjectsV2 (`list-type=2`: continuation tokens, start-after, KeyCount) and V1 (marker,
 * NextMarker with a delimiter) of the byte plane: S3's XML for a page of the catalog
 * (service/object-listing.ts), keys URL-encoded when asked (`encoding-type=url`).
 */
import type { Scope } from "../../domain/job";
import { xmlEscape } from "../../s3/errors";
import { continuationToken, listObjectPage, MAX_KEYS } from "../../service/object-listing";
import type { Repository } from "../../storage/repository";
import { countParam, isoDate, XMLNS, type S3Request } from "./protocol";

export async function listObjectsXml(repo: Repository, scope: Scope, r: S3Request): Promise<string> {
  const v2 = r.query.get("list-type") === "2";
  const prefix = r.query.get("prefix") ?? "";
  const delimiter = r.query.get("delimiter") ?? "";
  const urlEncoded = r.query.get("encoding-type") === "url";
  const limit = countParam(r.query, "max-keys", MAX_KEYS);
  const token = r.query.get("continuation-token");
  let after: string;
  if (v2 && token) {
    after = continuationToken.decode(token);
  } else {
    after = (v2 ? r.query.get("start-after") : r.query.get("marker")) ?? "";
  }
  const enc = (s: string) => xmlEscape(urlEncoded ? encodeURIComponent(s).replace(/%2F/g, "/") : s);
  const page = await listObjectPage(repo, scope, { prefix, delimiter, maxKeys: limit, after });
  const truncated = page.truncated;
  const last = page.resumeAfter;
  const contents = page.objects.map(
    (o) => `<Contents><Key>${enc(o.key)}</Key><LastModified>${isoDate(o.updatedAt)}</LastModified><ETag>&quot;${o.etag}&quot;</ETag><Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
  );
  const prefixes = page.prefixes.map((cp) => `<CommonPrefixes><Prefix>${enc(cp)}</Prefix></CommonPrefixes>`);
  const head = [
    `<Name>${xmlEscape(scope.bucket)}</Name>`,
    `<Prefix>${enc(prefix)}</Prefix>`,
    delimiter ? `<Delimiter>${enc(delimiter)}</Delimiter>` : "",
    `<MaxKeys>${limit}</MaxKeys>`,
    urlEncoded ? "<EncodingType>url</EncodingType>" : "",
    `<IsTruncated>${truncated}</IsTruncated>`,
  ];
  if (v2) {
    head.push(`<KeyCount>${contents.length + prefixes.length}</KeyCount>`);
    if (token) head.push(`<ContinuationToken>${xmlEscape(token)}</ContinuationToken>`);
    if (r.query.get("start-after")) head.push(`<StartAfter>${enc(r.query.get("start-after") ?? "")}</StartAfter>`);
    if (truncated) head.push(`<NextContinuationToken>${continuationToken.encode(last)}</NextContinuationToken>`);
  } else {
    head.push(`<Marker>${enc(r.query.get("marker") ?? "")}</Marker>`);
    if (truncated && delimiter) head.push(`<NextMarker>${enc(last)}</NextMarker>`);
  }
  return `<ListBucketResult xmlns="${XMLNS}">${head.join("")}${contents.join("")}${prefixes.join("")}</ListBucketResult>`;
}
