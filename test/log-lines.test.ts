/**
 * The log's way to stderr, in real processes: the lines of one turn of the event loop
 * leave in one write, in order, none lost — a line logged alone still shows up while the
 * process keeps running, and lines logged just before process.exit or an uncaught error
 * are written on the way out.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";

jest.setTimeout(30_000);

const ROOT = join(__dirname, "..");

/**
 * Runs `body` in a Node process with `log` (createLogger at info, to stderr) in scope, and
 * counts the write calls that reached stderr (fd 2) — printed on stdout at exit.
 */
function runLogging(body: string, opts: { until?: (stderr: string) => boolean; stderrTo?: number } = {}): Promise<{ code: number | null; stderr: string; writes: number; stdout: string }> {
  const script = `
    const fs = require("node:fs");
    let writes = 0;
    const writeSync = fs.writeSync;
    fs.writeSync = function (fd, ...rest) { if (fd === 2) writes++; return writeSync.call(fs, fd, ...rest); };
    const { createLogger } = require(${JSON.stringify(join(ROOT, "src", "log.ts"))});
    const log = createLogger("info");
    // After the logger's own exit hook, so its last write is counted.
    process.on("exit", () => writeSync.call(fs, 1, "writes=" + writes + "\\n"));
    ${body}
  `;
  const child = spawn(process.execPath, ["-r", join(ROOT, "test", "helpers", "ts-register.cjs"), "-e", script], { stdio: ["ignore", "pipe", opts.stderrTo ?? "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d) => (stdout += String(d)));
  child.stderr?.on("data", (d) => {
    stderr += String(d);
    if (opts.until?.(stderr)) child.kill("SIGKILL");
  });
  return new Promise((resolve) =>
    child.once("close", (code) => resolve({ code, stderr, stdout, writes: Number(/writes=(\d+)/.exec(stdout)?.[1] ?? -1) })),
  );
}

const messages = (stderr: string) =>
  stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l).msg as string);

test("500 lines logged in one turn reach stderr whole and in order, in one write", async () => {
  const r = await runLogging(`for (let i = 0; i < 500; i++) log.info("job finished", { n: i });`);
  expect(r.code).toBe(0);
  const lines = r.stderr.trim().split("\n").map((l) => JSON.parse(l));
  expect(lines.map((l) => l.n)).toEqual(Array.from({ length: 500 }, (_, i) => i));
  expect(lines[0]).toMatchObject({ level: "info", msg: "job finished" });
  expect(r.writes).toBe(1);
});

test("lines of separate turns leave separately, each without waiting for more", async () => {
  // The process never ends by itself: it is killed once the second line has arrived, so
  // each line must have been written while the process kept running.
  const r = await runLogging(
    `log.info("first"); setTimeout(() => log.warn("second"), 50); setInterval(() => {}, 1000);`,
    { until: (err) => err.includes('"second"') },
  );
  expect(messages(r.stderr)).toEqual(["first", "second"]);
});

test("lines logged right before process.exit are written", async () => {
  const r = await runLogging(`log.info("a"); log.error("b", { err: new Error("boom") }); process.exit(3);`);
  expect(r.code).toBe(3);
  expect(messages(r.stderr)).toEqual(["a", "b"]);
  expect(r.stderr).toContain("boom");
  expect(r.writes).toBe(1);
});

test("lines logged before an uncaught error are written, before Node's report of it", async () => {
  const r = await runLogging(`log.info("before the crash"); setImmediate(() => { throw new Error("uncaught here"); });`);
  expect(r.code).toBe(1);
  expect(messages(r.stderr)).toEqual(["before the crash"]);
  expect(r.stderr.indexOf("before the crash")).toBeLessThan(r.stderr.indexOf("uncaught here"));
});

test("loggers of one process share the order of their lines", async () => {
  const r = await runLogging(`
    const other = createLogger("info").child({ job: "j1" });
    log.info("one"); other.info("two"); log.child({ x: 1 }).info("three"); other.warn("four");`);
  expect(messages(r.stderr)).toEqual(["one", "two", "three", "four"]);
  expect(r.writes).toBe(1);
});

test("a log that cannot be written (stderr on a full disk) is dropped and the process goes on", async () => {
  const full = openSync("/dev/full", "w"); // every write: ENOSPC
  try {
    const r = await runLogging(
      `let n = 0;
       const tick = setInterval(() => {
         log.info("onto a full disk", { n: n++ });
         if (n === 20) { clearInterval(tick); process.stdout.write("still running\\n"); }
       }, 10);`,
      { stderrTo: full },
    );
    expect(r.stdout).toContain("still running");
    expect(r.code).toBe(0);
  } finally {
    closeSync(full);
  }
});
