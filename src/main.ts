#!/usr/bin/env node
/** Process entry: loads the configuration, starts the server, stops it on SIGINT/SIGTERM. */
import { build } from "./app";
import { GROUP_ALIASES, runClientCli, USAGE } from "./cli/client";
import { VERSION } from "./version";
import { runTokensCli } from "./cli/tokens";
import { migrate } from "./storage/postgres/migrate";
import { PgRepository } from "./storage/postgres/repository";
import { startEmbeddedPostgres } from "./storage/postgres/embedded";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig, StartupError, type Config } from "./config";
import { createLogger, flushLogs } from "./log";

const HELP = `k3-ingest ${VERSION} — a server for the K3 ingest API, and its command line.

Server (configured by K3_* variables; see the README):
  k3-ingest serve              API and worker in one process (npm start)
  k3-ingest api | worker       the API only, or a worker only
  k3-ingest migrate            apply the database migrations and exit
  k3-ingest db-url             the database URL (DATABASE_URL, or the embedded one's), for psql
  k3-ingest tokens create|list|revoke …   API tokens (and --s3 access keys)

Client, against a running server:
${USAGE.split("\n").slice(1).join("\n")}

  k3-ingest help COMMAND | COMMAND --help     the usage of one command
  k3-ingest --version

Examples:
  k3-ingest buckets create kb-docs
  k3-ingest objects put -b kb-docs ./report.pdf -k reports/q3.pdf
  k3-ingest search "quarterly revenue" -b kb-docs --top-k 5`;

async function main(): Promise<void> {
  // `main.js worker` (or `api`, `all`) picks the role; `main.js serve` runs K3_ROLE's.
  const arg = process.argv[2];
  if (arg === undefined || arg === "help" || arg === "--help" || arg === "-h") {
    const group = arg === "help" ? process.argv[3] : undefined;
    if (group && group !== "serve") process.exit(await runClientCli([group, "--help"], process.env));
    process.stdout.write(`${HELP}\n`);
    process.exit(0);
  }
  if (arg === "--version" || arg === "-v" || arg === "version") {
    process.stdout.write(`k3-ingest ${VERSION}\n`);
    process.exit(0);
  }
  if (["jobs", "trigger", "rules", "pipelines", "buckets", "objects", "sources", "credentials", "sync", "search", "collections", "vectors", ...Object.keys(GROUP_ALIASES)].includes(arg ?? "")) {
    process.exit(await runClientCli(process.argv.slice(2), process.env));
  }
  if (arg === "migrate") {
    try {
      const config = loadConfig(process.env);
      const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort });
      const repo = new PgRepository({ connectionString: config.databaseUrl ?? embedded!.connectionString, poolSize: 1 });
      const applied = await migrate(repo.pool);
      await repo.close();
      await embedded?.stop();
      process.stdout.write(applied.length ? `applied ${applied.join(", ")}\n` : "up to date\n");
      process.exit(0);
    } catch (err) {
      process.stderr.write(`k3-ingest migrate: ${(err as Error).message}\n`);
      process.exit(1);
    }
  }
  if (arg === "db-url") {
    // Where the outputs are: the database to point psql or a BI tool at.
    const config = loadConfig(process.env);
    if (config.databaseUrl) {
      process.stdout.write(`${config.databaseUrl}\n`);
      process.exit(0);
    }
    const pwFile = join(config.dataDir, "pg-password");
    if (!existsSync(pwFile)) {
      process.stderr.write(`k3-ingest db-url: no embedded database in ${config.dataDir} yet (no pg-password); start the server first, or set DATABASE_URL\n`);
      process.exit(1);
    }
    const password = encodeURIComponent(readFileSync(pwFile, "utf8").trim());
    process.stdout.write(`postgres://postgres:${password}@127.0.0.1:${config.embeddedPgPort}/k3\n`);
    process.exit(0);
  }
  if (arg === "tokens") {
    try {
      process.exit(await runTokensCli(process.argv.slice(3), loadConfig(process.env)));
    } catch (err) {
      process.stderr.write(`k3-ingest tokens: ${(err as Error).message}\n`);
      process.exit(1);
    }
  }
  // `serve` runs what K3_ROLE says (all by default): the Docker image's command is `serve`,
  // so an operator's K3_ROLE=api must hold there. `all`, `api` and `worker` name the role.
  const roles: Record<string, string | undefined> = { serve: undefined, all: "all", api: "api", worker: "worker" };
  if (arg !== undefined && !(arg in roles)) {
    process.stderr.write(`k3-ingest: unknown command ${JSON.stringify(arg)}\n${HELP}\n`);
    process.exit(2);
  }
  let config;
  try {
    const role = roles[arg];
    config = loadConfig(role ? { ...process.env, K3_ROLE: role } : process.env);
  } catch (err) {
    process.stderr.write(`k3-ingest: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const log = createLogger(config.logLevel, undefined, config.logLines);
  const app = build(config, log);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping", { signal });
    try {
      await app.stop();
      process.exit(0);
    } catch (err) {
      log.error("stop failed", { err });
      process.exit(1);
    }
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  try {
    const { httpPort, grpcPort } = await app.start();
    flushLogs(); // the banner after the start's log lines, not among them
    if (process.stderr.isTTY) process.stderr.write(banner(config, httpPort, grpcPort));
  } catch (err) {
    flushLogs();
    if (err instanceof StartupError) process.stderr.write(`k3-ingest: ${err.message}\n`);
    else log.error("start failed", { err });
    await app.stop().catch(() => undefined);
    process.exit(1);
  }
}

/** What a person starting the server on a terminal wants to know (the logs stay JSON). */
function banner(config: Config, httpPort: number, grpcPort: number): string {
  const host = config.host === "0.0.0.0" || config.host === "::" ? "localhost" : config.host;
  const token = join(config.dataDir, "admin-token");
  const lines = [`k3-ingest ${VERSION} (${config.role === "all" ? "API and worker" : config.role === "api" ? "API only" : "worker only"})`];
  if (config.role !== "worker") {
    lines.push(`  HTTP (REST, Connect, gRPC-Web, S3)  http://${host}:${httpPort}`, `  gRPC (reflection on)                ${host}:${grpcPort}`);
    if (existsSync(token)) lines.push(`  admin token                         ${token}   export DODIL_TOKEN=$(cat ${token})`);
  }
  lines.push(`  data                                ${config.dataDir}`, `  database                            ${config.databaseUrl ? "DATABASE_URL" : `embedded PostgreSQL (port ${config.embeddedPgPort})`}`, "  stop with Ctrl-C; logs follow as JSON", "");
  return lines.join("\n");
}

void main();
