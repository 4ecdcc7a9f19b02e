/**
 * An object's `?tagging` sub-resource: GetObjectTagging, PutObjectTagging (its XML body,
 * checked as S3 checks it) and DeleteObjectTagging. Tags change neither the object's bytes,
 * its ETag nor its dates, and run no rules. The tags themselves: src/s3/tagging.ts.
 */
import type { ServerResponse } from "node:http";
import type { Scope } from "../../domain/job";
import { S3Error } from "../../s3/errors";
import { parseTaggingXml, TAGGING_KEY, taggingHeader, taggingXml, tagsOf } from "../../s3/tagging";
import type { Repository } from "../../storage/repository";
import { send, sendXml, XMLNS, type S3Request } from "./protocol";

/** What a tagging call needs beside the request. */
export interface TaggingIo {
  repo: Pick<Repository, "catalog">;
  readBody(): Promise<string>;
}

const noSuchKey = () => new S3Error("NoSuchKey", 404, "The specified key does not exist.");

/** Answers GET, PUT or DELETE on `/{bucket}/{key}?tagging`. */
export async function objectTaggingCall(io: TaggingIo, res: ServerResponse, scope: Scope, r: S3Request): Promise<void> {
  switch (r.method) {
    case "GET": {
      const o = await io.repo.catalog.objectGet(scope, r.key);
      if (!o) throw noSuchKey();
      sendXml(res, taggingXml(tagsOf(o.metadata), XMLNS), r);
      return;
    }
    case "PUT": {
      const stored = taggingHeader(parseTaggingXml(await io.readBody()));
      if (!(await io.repo.catalog.objectMetadataSet(scope, r.key, TAGGING_KEY, stored))) throw noSuchKey();
      send(res, 200, { "x-amz-request-id": r.requestId });
      return;
    }
    case "DELETE":
      if (!(await io.repo.catalog.objectMetadataSet(scope, r.key, TAGGING_KEY, undefined))) throw noSuchKey();
      send(res, 204, { "x-amz-request-id": r.requestId });
      return;
    default:
      throw new S3Error("MethodNotAllowed", 405, `${r.method} is not allowed on an object's tagging`);
  }
}

/** The role and policy action a tagging call needs. */
export function taggingAccess(method: string): ["reader" | "writer", "s3:GetObjectTagging" | "s3:PutObjectTagging" | "s3:DeleteObjectTagging"] {
  if (method === "GET") return ["reader", "s3:GetObjectTagging"];
  return ["writer", method === "DELETE" ? "s3:DeleteObjectTagging" : "s3:PutObjectTagging"];
}
