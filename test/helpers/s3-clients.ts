/**
 * Real S3 clients against a test server's byte plane: an admin token with an access key
 * pair, the AWS CLI and boto3 (the python3 on PATH has it) signing with that pair.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { jsonClient } from "./http";
import type { TestServers } from "./servers";
import { insertToken } from "./tokens";

const run = promisify(execFile);

export interface S3Admin {
  /** The bearer header of the admin token. */
  auth: Record<string, string>;
  keys: { id: string; secret: string };
  /** The AWS CLI with the keys in its environment only (no config files from `work`); rejects when it fails. */
  aws(args: string[]): Promise<{ stdout: string; stderr: string }>;
  /** Runs a boto3 script with `c`, an S3 client of the keys (Signature V4); its stdout, trimmed. */
  boto3(script: string, ...args: string[]): Promise<string>;
}

/** The AWS CLI's environment for `keys` alone (no config files from `work`, one attempt). */
export function awsEnv(keys: { id: string; secret: string }, work: string): NodeJS.ProcessEnv {
  return { ...process.env, AWS_ACCESS_KEY_ID: keys.id, AWS_SECRET_ACCESS_KEY: keys.secret, AWS_DEFAULT_REGION: "us-east-1", AWS_MAX_ATTEMPTS: "1", AWS_CONFIG_FILE: join(work, "no-config"), AWS_SHARED_CREDENTIALS_FILE: join(work, "no-credentials") };
}

/** An admin of every bucket of the default organization, with S3 keys, after creating `buckets`. */
export async function s3Admin(s: TestServers, work: string, buckets: string[] = []): Promise<S3Admin> {
  const t = await insertToken(s, "default", [{ bucket: "*", role: "admin" }], true);
  const auth = { authorization: `Bearer ${t.token}` };
  for (const name of buckets) {
    const made = await jsonClient(() => s.httpUrl, auth)("POST", "/admin/buckets", { name });
    if (made.status !== 200) throw new Error(`bucket ${name}: ${made.status}`);
  }
  const keys = { id: t.id, secret: t.secret };
  const env = awsEnv(keys, work);
  // boto3 presigns with the legacy Signature V2 unless told otherwise; only V4 is served.
  const prelude = `import boto3, sys\nfrom botocore.config import Config\nc = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name="us-east-1", config=Config(signature_version="s3v4"))\n`;
  return {
    auth,
    keys,
    aws: (args) => run("aws", ["--endpoint-url", s.httpUrl, ...args], { env, timeout: 60_000, maxBuffer: 64 << 20 }),
    boto3: async (script, ...args) => (await run("python3", ["-c", prelude + script, s.httpUrl, keys.id, keys.secret, ...args], { timeout: 60_000 })).stdout.trim(),
  };
}
