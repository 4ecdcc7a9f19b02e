/** What a presigned object URL signs: method, organization, bucket, key and expiry (Unix seconds). */
export function presignedPayload(org: string, bucket: string, key: string, expires: number): string {
  return ["GET", org, bucket, key, String(expires)].join("\n");
}
