/**
 * docker-compose.yml cannot be run here (no Docker engine), so its structure is checked
 * (test/packaging.test.ts runs its worker healthcheck against a real worker):
 * PostgreSQL, one API and one separate worker, health checks, named volumes, and every
 * reference (depends_on, volumes, DATABASE_URL host) pointing at something declared.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";

// Compose files are untyped YAML; the checks below look at each field they use.
type Y = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

// Merge keys (`<<: *k3`) as Compose reads them.
const compose = parse(readFileSync(join(__dirname, "..", "docker-compose.yml"), "utf8"), { merge: true }) as Y;
const services = compose.services as Record<string, Y>;

test("it declares PostgreSQL, the API and a separate worker", () => {
  expect(Object.keys(services).sort()).toEqual(["k3-ingest", "k3-worker", "postgres"]);
  expect(services.postgres.image).toMatch(/^postgres:\d+/);
  // Both run the image of the Dockerfile; the command picks the role.
  expect(services["k3-ingest"].build).toBe(".");
  expect(services["k3-ingest"].command).toEqual(["api"]);
  expect(services["k3-ingest"].ports).toEqual(expect.arrayContaining(["8080:8080", "50051:50051"]));
  expect(services["k3-worker"].command).toEqual(["worker"]);
  expect(services["k3-worker"].ports).toBeUndefined();
});

test("every service has a health check and waits for what it needs", () => {
  for (const [name, svc] of Object.entries(services)) {
    expect({ name, test: Array.isArray(svc.healthcheck?.test) }).toEqual({ name, test: true });
    for (const [dep, cond] of Object.entries((svc.depends_on ?? {}) as Record<string, Y>)) {
      expect(Object.keys(services)).toContain(dep);
      expect(cond.condition).toBe("service_healthy");
    }
  }
  expect(services["k3-ingest"].depends_on).toHaveProperty("postgres");
  expect(services["k3-worker"].depends_on).toHaveProperty("k3-ingest");
  expect(services.postgres.healthcheck.test.join(" ")).toContain("pg_isready");
  expect(services["k3-ingest"].healthcheck.test.join(" ")).toContain("/readyz");
});

test("both k3 services use the postgres service and the same data volume; named volumes are declared", () => {
  const pg = services.postgres.environment;
  for (const name of ["k3-ingest", "k3-worker"]) {
    const url = new URL(services[name].environment.DATABASE_URL);
    expect(url.hostname).toBe("postgres");
    expect(url.username).toBe(pg.POSTGRES_USER);
    expect(url.password).toBe(pg.POSTGRES_PASSWORD);
    expect(url.pathname).toBe(`/${pg.POSTGRES_DB}`);
    // K3_DATA_DIR is the image's (Dockerfile ENV), where the volume goes.
    expect(readFileSync(join(__dirname, "..", "Dockerfile"), "utf8")).toMatch(/^ENV .*K3_DATA_DIR=\/data/m);
    expect(services[name].volumes).toContain("k3-data:/data");
  }
  const declared = Object.keys(compose.volumes);
  for (const svc of Object.values(services)) {
    for (const v of (svc.volumes ?? []) as string[]) {
      const source = v.split(":")[0];
      if (!source.startsWith(".") && !source.startsWith("/")) expect(declared).toContain(source);
    }
  }
});
