#!/usr/bin/env node
/** Process entry: loads the configuration, starts the server, stops it on SIGINT/SIGTERM. */
import { build } from "./app";
import { runClientCli } from "./cli/client";
import { runTokensCli } from "./cli/tokens";
import { migrate } from "./storage/postgres/migrate";
import { PgRepository } from "./storage/postgres/repository";
import { startEmbeddedPostgres } from "./storage/postgres/embedded";
import { loadConfig } from "./config";
import { createLogger } from "./log";

async function main(): Promise<void> {
  // `main.js worker` (or `api`) picks the role; K3_ROLE does the same.
  const arg = process.argv[2];
  if (["jobs", "trigger", "rules", "pipelines", "buckets", "objects", "sources", "sync", "search"].includes(arg ?? "")) {
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
  if (arg === "tokens") {
    try {
      process.exit(await runTokensCli(process.argv.slice(3), loadConfig(process.env)));
    } catch (err) {
      process.stderr.write(`k3-ingest tokens: ${(err as Error).message}\n`);
      process.exit(1);
    }
  }
  const roles: Record<string, string> = { serve: "all", all: "all", api: "api", worker: "worker" };
  if (arg !== undefined && !(arg in roles)) {
    process.stderr.write(`k3-ingest: unknown command ${JSON.stringify(arg)}; use serve, api, worker, migrate, tokens, jobs, trigger, rules, pipelines, buckets or objects\n`);
    process.exit(2);
  }
  let config;
  try {
    config = loadConfig(arg ? { ...process.env, K3_ROLE: roles[arg] } : process.env);
  } catch (err) {
    process.stderr.write(`k3-ingest: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const log = createLogger(config.logLevel);
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
    await app.start();
  } catch (err) {
    log.error("start failed", { err });
    await app.stop().catch(() => undefined);
    process.exit(1);
  }
}

void main();
