/**
 * Assembles the scan kernel's text (src/search/scan-kernel.wat) with wabt, the WebAssembly
 * binary toolkit: `npm run generate` writes the binary the server loads, and a test checks
 * that the committed binary is what the text assembles to.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import wabt from "wabt";

export const KERNEL_TEXT = join(__dirname, "..", "..", "src", "search", "scan-kernel.wat");
export const KERNEL_BINARY = join(__dirname, "..", "..", "src", "search", "scan-kernel.wasm");

export async function assembleKernel(): Promise<Uint8Array> {
  const w = await wabt();
  const mod = w.parseWat(KERNEL_TEXT, readFileSync(KERNEL_TEXT, "utf8"), { simd: true });
  try {
    mod.validate();
    return Uint8Array.from(mod.toBinary({ write_debug_names: false }).buffer);
  } finally {
    mod.destroy();
  }
}

if (require.main === module) {
  void assembleKernel().then((bytes) => writeFileSync(KERNEL_BINARY, bytes));
}
