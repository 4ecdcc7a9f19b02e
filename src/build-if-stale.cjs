#!/usr/bin/env node
/**
 * Runs `npm run build` only when the build is missing or older than a source: what
 * `npm start`, `npm run worker` and `npm run tokens` run first, so an up-to-date checkout
 * starts at once. Plain CommonJS: it runs before anything is compiled.
 */
const { execSync } = require("node:child_process");
const { existsSync, readdirSync, statSync } = require("node:fs");
const { join } = require("node:path");

const root = join(__dirname, "..");
const built = join(root, "dist", "src", "main.js");
const inputs = ["src", "gen", "proto"].flatMap((d) => readdirSync(join(root, d), { recursive: true }).map((f) => join(root, d, String(f))));
inputs.push(join(root, "package.json"), join(root, "tsconfig.build.json"));
const newest = Math.max(...inputs.map((f) => statSync(f).mtimeMs));
if (existsSync(built) && statSync(built).mtimeMs >= newest) process.exit(0);
execSync("npm run -s build", { cwd: root, stdio: "inherit" });
