/** Configuration: the only module that reads environment variables. */
import { resolve } from "node:path";
import type { LogLevel } from "./log";

/** The validated, frozen configuration of one process. */
export interface Config {
  /** PostgreSQL URL; undefined starts the embedded database. */
  databaseUrl: string | undefined;
  host: string;
  httpPort: number;
  grpcPort: number;
  dataDir: string;
  /** Port of the embedded PostgreSQL (only used without databaseUrl). */
  embeddedPgPort: number;
  logLevel: LogLevel;
  maxBodyBytes: number;
  dbPoolSize: number;
}

function port(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new Error(`${name}=${JSON.stringify(raw)} is not a port number (0-65535)`);
  }
  return n;
}

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name}=${JSON.stringify(raw)} must be a positive integer`);
  return n;
}

const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];

/** Reads and validates the configuration; throws an Error naming the bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): Readonly<Config> {
  const logLevel = (env.K3_LOG_LEVEL || "info") as LogLevel;
  if (!LEVELS.includes(logLevel)) {
    throw new Error(`K3_LOG_LEVEL=${JSON.stringify(env.K3_LOG_LEVEL)} must be one of ${LEVELS.join(", ")}`);
  }
  return Object.freeze({
    databaseUrl: env.DATABASE_URL || undefined,
    host: env.K3_HOST || "0.0.0.0",
    httpPort: port(env, "K3_HTTP_PORT", 8080),
    grpcPort: port(env, "K3_GRPC_PORT", 50051),
    dataDir: resolve(env.K3_DATA_DIR || "./.k3-data"),
    embeddedPgPort: port(env, "K3_EMBEDDED_PG_PORT", 54329),
    logLevel,
    maxBodyBytes: positiveInt(env, "K3_MAX_BODY_BYTES", 1024 * 1024),
    dbPoolSize: positiveInt(env, "K3_DB_POOL_SIZE", 10),
  });
}
