/**
 * S3 names many operations by a query parameter on the bucket's or object's path (a
 * "sub-resource": `PUT /b/k?tagging` is PutObjectTagging, `DELETE /b?cors` is
 * DeleteBucketCors). The byte plane serves `uploads`, `uploadId` and `partNumber`
 * (multipart), `delete` (DeleteObjects), `location`, `versioning` (read only: versioning is
 * never on), a bucket's `cors` (bucket-cors.ts), `policy` and `policyStatus` (bucket-policy.ts), an object's `tagging` (object-tagging.ts) and the listing's parameters; any other sub-resource is refused with 501 before
 * anything is read or changed — taken for the plain operation on the same path, a
 * PutObjectTagging would overwrite the object with its XML and a DeleteBucketCors delete
 * the bucket. Requests that ask for guarantees the byte plane cannot give (customer-key
 * encryption, object lock) or for a version other than the current one are refused too, and
 * so are browser form uploads (POST Object), before authentication, which they carry in
 * the form.
 */
import type { IncomingHttpHeaders } from "node:http";
import { S3Error } from "../../s3/errors";

/** Sub-resources S3 defines that the byte plane does not serve. */
const UNSERVED = [
  "acl", "lifecycle", "website", "logging", "notification", "replication",
  "encryption", "object-lock", "legal-hold", "retention", "restore", "select", "torrent", "accelerate", "analytics",
  "inventory", "metrics", "intelligent-tiering", "ownershipControls", "publicAccessBlock", "requestPayment",
  "attributes", "versions", "session", "renameObject",
];

/** Headers that ask for what is not kept: customer-key encryption, object lock. */
const UNSERVED_HEADERS = [
  "x-amz-server-side-encryption-customer-algorithm", "x-amz-copy-source-server-side-encryption-customer-algorithm",
  "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold",
];

/** Throws 501 NotImplemented (400 for a version) when the request names what is not served. */
export function refuseUnserved(method: string, key: string, query: URLSearchParams, headers: IncomingHttpHeaders): void {
  if (method === "POST" && key === "" && /^multipart\/form-data/i.test(String(headers["content-type"] ?? ""))) {
    throw new S3Error("NotImplemented", 501, "POST Object (an HTML form upload with a signed policy) is not implemented on this byte plane; upload with PUT — a presigned PUT URL works from a browser");
  }
  const sub =
    UNSERVED.find((name) => query.has(name)) ??
    (query.has("versioning") && method !== "GET" ? "versioning" : undefined) ??
    (key === "" && query.has("tagging") ? "tagging" : undefined) ?? // an object's only (object-tagging.ts)
    ["cors", "policy", "policyStatus"].find((name) => key !== "" && query.has(name)); // a bucket's only (bucket-cors.ts, bucket-policy.ts)
  if (sub) throw new S3Error("NotImplemented", 501, `?${sub} (the ${sub} sub-resource) is not implemented on this byte plane; nothing was read or changed`);
  const header = UNSERVED_HEADERS.find((name) => headers[name] !== undefined);
  if (header) throw new S3Error("NotImplemented", 501, `${header} is not implemented on this byte plane (objects are stored as sent, without customer-key encryption or object lock); nothing was written`);
  const version = query.get("versionId");
  if (version !== null && version !== "null") {
    throw new S3Error("InvalidArgument", 400, `versionId ${JSON.stringify(version)}: objects here keep no versions; the current one is versionId "null"`);
  }
}
