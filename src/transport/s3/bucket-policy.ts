/**
 * A bucket's policy on the byte plane, as S3 serves it: GetBucketPolicy, PutBucketPolicy and
 * DeleteBucketPolicy (`GET/PUT/DELETE /{bucket}?policy`, a JSON document, not XML) and
 * GetBucketPolicyStatus (`GET /{bucket}?policyStatus`: whether the policy lets anyone in).
 * The document is checked and evaluated in domain/bucket-policy.ts; enforcement is access.ts's.
 */
import type { ServerResponse } from "node:http";
import type { Role } from "../../domain/auth";
import { parseBucketPolicy, type PolicyAction } from "../../domain/bucket-policy";
import type { BucketRow } from "../../domain/bucket";
import { InvalidArgument } from "../../domain/errors";
import type { Scope } from "../../domain/job";
import { S3Error } from "../../s3/errors";
import type { BucketCallIo } from "./bucket-cors";
import { send, sendXml, XMLNS, type S3Request } from "./protocol";

/** The role and the action a ?policy or ?policyStatus request needs. */
export function policyAccess(r: S3Request): [Role, PolicyAction] {
  if (r.query.has("policyStatus")) return ["reader", "s3:GetBucketPolicyStatus"];
  if (r.method === "PUT") return ["admin", "s3:PutBucketPolicy"];
  if (r.method === "DELETE") return ["admin", "s3:DeleteBucketPolicy"];
  return ["reader", "s3:GetBucketPolicy"];
}

/** The ?policy and ?policyStatus calls on an existing bucket (`row` is its own row). */
export async function bucketPolicyCall(io: BucketCallIo, res: ServerResponse, scope: Scope, row: BucketRow, r: S3Request): Promise<void> {
  if (r.query.has("policyStatus")) {
    if (r.method !== "GET") throw new S3Error("MethodNotAllowed", 405, `${r.method} is not allowed on ?policyStatus (GET is)`);
    if (!row.policy) throw new S3Error("NoSuchBucketPolicy", 404, "The bucket policy does not exist");
    sendXml(res, `<PolicyStatus xmlns="${XMLNS}"><IsPublic>${row.policy.public}</IsPublic></PolicyStatus>`, r);
    return;
  }
  switch (r.method) {
    case "GET":
      if (!row.policy) throw new S3Error("NoSuchBucketPolicy", 404, "The bucket policy does not exist");
      send(res, 200, { "content-type": "application/json", "x-amz-request-id": r.requestId }, row.policy.text);
      return;
    case "PUT": {
      let policy;
      try {
        policy = parseBucketPolicy(await io.readBody(), scope.bucket);
      } catch (err) {
        if (err instanceof InvalidArgument) throw new S3Error("MalformedPolicy", 400, err.message);
        throw err;
      }
      await io.repo.buckets.bucketPolicySet(scope, policy, io.now());
      send(res, 204, { "x-amz-request-id": r.requestId });
      return;
    }
    case "DELETE":
      await io.repo.buckets.bucketPolicySet(scope, undefined, io.now());
      send(res, 204, { "x-amz-request-id": r.requestId });
      return;
    default:
      throw new S3Error("MethodNotAllowed", 405, `${r.method} is not allowed on ?policy (GET, PUT and DELETE are)`);
  }
}
