/** Starts the real server (both ports on 0) on a test database and a temporary data dir. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { build, type App } from "../../src/app";
import { loadConfig } from "../../src/config";
import { createLogger } from "../../src/log";
import { createTestDb, type TestDb } from "./db";

/** A running server and the handles a test needs. */
export interface TestServers {
  app: App;
  db: TestDb;
  dataDir: string;
  httpUrl: string;
  grpcAddress: string;
  /** Writes an object into a bucket of the server's data dir. */
  putObject(bucket: string, key: string, content: string | Buffer): void;
  stop(): Promise<void>;
}

/**
 * Starts a server on its own database; extra env entries override the defaults. The
 * worker is off unless the caller asks for it (K3_ROLE=all), so API tests see jobs stay
 * where they put them; auth is off unless asked for (K3_AUTH=on) — test/auth.test.ts
 * covers it on every door.
 */
export async function startServers(
  env: Record<string, string> = {},
  opts: { adminUrl?: string; logLines?: string[] } = {},
): Promise<TestServers> {
  const db = await createTestDb(opts.adminUrl);
  const dataDir = mkdtempSync(join(tmpdir(), "k3-test-data-"));
  const config = loadConfig({
    DATABASE_URL: db.url,
    K3_HOST: "127.0.0.1",
    K3_HTTP_PORT: "0",
    K3_GRPC_PORT: "0",
    K3_DATA_DIR: dataDir,
    K3_DB_POOL_SIZE: "4",
    K3_ROLE: "api",
    K3_AUTH: "off",
    // The tests' external S3 sources (moto) listen on loopback, which sources may reach only when named.
    K3_SOURCE_ALLOW: "127.0.0.1",
    ...env,
  });
  const logger = opts.logLines
    ? createLogger("debug", (line) => opts.logLines!.push(line), config.logLines)
    : createLogger(process.env.K3_TEST_LOG === "1" ? "debug" : "silent");
  const app = build(config, logger);
  const { httpPort, grpcPort } = await app.start();
  return {
    app,
    db,
    dataDir,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    putObject(bucket, key, content) {
      const path = join(dataDir, "buckets", bucket, key);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content);
    },
    async stop() {
      await app.stop();
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Another instance on the same database as `s` (its own ports and data dir). */
export async function startPeer(s: TestServers, env: Record<string, string> = {}): Promise<{ app: App; httpUrl: string; grpcAddress: string; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), "k3-test-peer-"));
  const app = build(
    loadConfig({ DATABASE_URL: s.db.url, K3_HOST: "127.0.0.1", K3_HTTP_PORT: "0", K3_GRPC_PORT: "0", K3_DATA_DIR: dataDir, K3_DB_POOL_SIZE: "4", K3_ROLE: "api", K3_AUTH: "off", ...env }),
    createLogger(process.env.K3_TEST_LOG === "1" ? "debug" : "silent"),
  );
  const { httpPort, grpcPort } = await app.start();
  return {
    app,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    async stop() {
      await app.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
