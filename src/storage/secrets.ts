/**
 * Sealing of secrets the server must be able to read back (S3 secret access keys, for
 * SigV4): AES-256-GCM under a key kept outside the database — K3_SECRETS_KEY (base64 of
 * 32 bytes; give every instance the same one) or, by default, `<dataDir>/secrets.key`
 * (0600, made on first use). A sealed value is nonce (12) || tag (16) || ciphertext.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Seals and opens secrets with one key. */
export interface SecretBox {
  seal(plain: string): Buffer;
  open(sealed: Buffer): string;
  /** An HMAC-SHA256 (hex) of `data` under a key derived from the sealing key (presigned URLs). */
  mac(data: string): string;
}

/** The box for the configured key (K3_SECRETS_KEY) or the data dir's key file. */
export function loadSecretBox(dataDir: string, configured: string | undefined): SecretBox {
  let key: Buffer;
  if (configured) {
    key = Buffer.from(configured, "base64");
    if (key.length !== 32) throw new Error("K3_SECRETS_KEY must be the base64 of 32 bytes (openssl rand -base64 32)");
  } else {
    const path = join(dataDir, "secrets.key");
    if (!existsSync(path)) {
      mkdirSync(dataDir, { recursive: true });
      writeFileSync(path, randomBytes(32).toString("base64") + "\n", { mode: 0o600, flag: "wx" });
    }
    key = Buffer.from(readFileSync(path, "utf8").trim(), "base64");
  }
  const macKey = createHmac("sha256", key).update("k3-ingest presigned urls").digest();
  return {
    mac: (data) => createHmac("sha256", macKey).update(data, "utf8").digest("hex"),
    seal(plain) {
      const nonce = randomBytes(12);
      const c = createCipheriv("aes-256-gcm", key, nonce);
      const body = Buffer.concat([c.update(plain, "utf8"), c.final()]);
      return Buffer.concat([nonce, c.getAuthTag(), body]);
    },
    open(sealed) {
      const d = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, 12));
      d.setAuthTag(sealed.subarray(12, 28));
      return Buffer.concat([d.update(sealed.subarray(28)), d.final()]).toString("utf8");
    },
  };
}
