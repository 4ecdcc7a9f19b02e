/**
 * What a presigned object URL (GetObjectUrl) signs: method, organization, bucket, key, expiry
 * (Unix seconds) and, when auth is on, the token that made it. The byte plane judges a URL
 * naming a token as a request of that token: revoked or expired, the URL stops working; a
 * bucket policy's Deny naming it applies. URLs made before they named their token sign the
 * first five fields only, and work until they expire (a day at most).
 */
export function presignedPayload(org: string, bucket: string, key: string, expires: number, tokenId = ""): string {
  return ["GET", org, bucket, key, String(expires), ...(tokenId ? [tokenId] : [])].join("\n");
}
