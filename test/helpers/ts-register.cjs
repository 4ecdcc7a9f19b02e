// Lets `node -r ./test/helpers/ts-register.cjs src/main.ts` run the TypeScript sources
// directly (compiled on load by @swc/core), so process tests exercise the current code
// without a build step.
const { transformSync } = require("@swc/core");
const fs = require("node:fs");

require.extensions[".ts"] = function compileTs(module, filename) {
  const { code } = transformSync(fs.readFileSync(filename, "utf8"), {
    filename,
    sourceMaps: "inline",
    jsc: { parser: { syntax: "typescript" }, target: "es2022" },
    module: { type: "commonjs", ignoreDynamic: true },
  });
  module._compile(code, filename);
};
