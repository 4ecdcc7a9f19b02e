/** The package version, for the OpenAPI document. */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

function findVersion(): string {
  // src/ when run from sources, dist/src/ when built: walk up to the package.json.
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const p = join(dir, "package.json");
    if (existsSync(p)) return (JSON.parse(readFileSync(p, "utf8")) as { version: string }).version;
  }
  return "0.0.0";
}

export const VERSION = findVersion();
