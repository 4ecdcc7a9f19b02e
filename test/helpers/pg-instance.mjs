// A PostgreSQL of a test's own, that the test can stop and start again (to simulate an
// outage): the embedded one of src/storage/postgres/embedded.ts, in a process of its own.
// Protocol on stdin/stdout: it prints "ready <port> <admin url>" once up; "stop" prints
// "stopped", "start" prints "started", "exit" stops it and exits.
import { createRequire } from "node:module";
import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { createInterface } from "node:readline";

const require = createRequire(import.meta.url);
require("./ts-register.cjs");
const { startEmbeddedPostgres, ephemeralDataDir } = require("../../src/storage/postgres/embedded.ts");

const port = await new Promise((resolve) => {
  const s = createServer().listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const dir = ephemeralDataDir("k3-outage-pg-");
const start = () => startEmbeddedPostgres({ dataDir: dir, port, database: "postgres" });
let pg = await start();
process.stdout.write(`ready ${port} ${pg.connectionString}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  if (line === "stop") {
    await pg.stop();
    process.stdout.write("stopped\n");
  } else if (line === "start") {
    pg = await start();
    process.stdout.write("started\n");
  } else if (line === "exit") {
    await pg.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  }
}
