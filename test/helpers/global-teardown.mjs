// Stops the embedded PostgreSQL of global-setup.mjs, when it started one.
export default async function globalTeardown() {
  const pg = globalThis.__K3_EMBEDDED_PG__;
  if (pg) await pg.stop();
}
