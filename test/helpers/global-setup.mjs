// Gives every test worker a PostgreSQL: DATABASE_URL when set (CI points it at the
// machine's server), otherwise the embedded PostgreSQL of src/storage/postgres/embedded.ts,
// started for this run in a throwaway folder.
import { createRequire } from "node:module";
import { createServer } from "node:net";

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export default async function globalSetup() {
  // The AWS SDK (a test-only client, pinned in package.json) warns on every run that its
  // releases after January 2027 need Node >= 22; the pinned one runs on our Node 20.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  if (process.env.DATABASE_URL) return;
  const require = createRequire(import.meta.url);
  require("./ts-register.cjs");
  const { startEmbeddedPostgres, ephemeralDataDir } = require("../../src/storage/postgres/embedded.ts");
  const port = await freePort();
  const pg = await startEmbeddedPostgres({ dataDir: ephemeralDataDir("k3-test-pg-"), port, ephemeral: true });
  globalThis.__K3_EMBEDDED_PG__ = pg;
  process.env.DATABASE_URL = pg.connectionString;
  process.stderr.write(`\n[k3 tests] DATABASE_URL not set: using an embedded PostgreSQL on port ${port}\n`);
}
