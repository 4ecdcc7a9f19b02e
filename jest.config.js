/** Jest: TypeScript through @swc/jest; one real PostgreSQL for the run (see test/helpers/global-setup.mjs). */
module.exports = {
  testEnvironment: "node",
  transform: {
    "^.+\\.ts$": [
      "@swc/jest",
      { jsc: { parser: { syntax: "typescript" }, target: "es2022" }, module: { type: "commonjs" } },
    ],
  },
  testMatch: ["<rootDir>/test/**/*.test.ts"],
  globalSetup: "<rootDir>/test/helpers/global-setup.mjs",
  globalTeardown: "<rootDir>/test/helpers/global-teardown.mjs",
  testTimeout: 30000,
  maxWorkers: 2,
};
