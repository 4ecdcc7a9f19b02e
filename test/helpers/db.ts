/** A database of its own for each test file, so files run in parallel without bleeding. */
import { randomBytes } from "node:crypto";
import { Client } from "pg";

/** A throwaway database. */
export interface TestDb {
  url: string;
  drop(): Promise<void>;
}

function adminUrl(override?: string): string {
  const url = override ?? process.env.DATABASE_URL;
  if (!url) throw new Error("DATABASE_URL is not set: the jest globalSetup should have set it");
  return url;
}

/** Creates an empty database next to DATABASE_URL's and returns its URL. */
export async function createTestDb(server?: string): Promise<TestDb> {
  const name = `k3_test_${randomBytes(6).toString("hex")}`;
  const admin = new Client({ connectionString: adminUrl(server) });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl(server));
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new Client({ connectionString: adminUrl(server) });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
