/**
 * Debian's Firefox ESR driven over WebDriver BiDi, the standard protocol Firefox speaks
 * itself (playwright-core drives only its own patched Firefox, and its BiDi mode sends
 * commands ESR 153 does not know). Just what the console's tests need: open a tab at a
 * size, navigate, run a script in the page and wait until one answers, collect the page's
 * JavaScript errors, take a screenshot.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";

export const FIREFOX = process.env.FIREFOX_PATH ?? "/usr/bin/firefox-esr";

// A quiet profile: no first-run pages, updates, telemetry or background requests.
const PREFS: Record<string, string | number | boolean> = {
  "app.update.disabledForTesting": true,
  "browser.shell.checkDefaultBrowser": false,
  "browser.startup.homepage_override.mstone": "ignore",
  "browser.startup.page": 0,
  "datareporting.policy.dataSubmissionEnabled": false,
  "toolkit.telemetry.reportingpolicy.firstRun": false,
  "network.captive-portal-service.enabled": false,
  "network.connectivity-service.enabled": false,
  "browser.safebrowsing.update.enabled": false,
  "extensions.update.enabled": false,
  "remote.active-protocols": 1,
};

type Json = Record<string, unknown>;

export interface FirefoxTab {
  goto(url: string): Promise<void>;
  /** Runs `body` (the body of an async function) in the page; answers its JSON-serialisable result. */
  run<T>(body: string): Promise<T>;
  /** Runs `body` until it answers something truthy, and answers that. */
  until<T>(what: string, body: string, timeoutMs?: number): Promise<T>;
  /** JavaScript errors the page has thrown so far. */
  errors: string[];
  screenshot(path: string): Promise<void>;
}

export interface Firefox {
  version: string;
  newTab(width: number, height: number): Promise<FirefoxTab>;
  close(): Promise<void>;
}

export async function launchFirefox(): Promise<Firefox> {
  const profile = mkdtempSync(join(tmpdir(), "k3-firefox-"));
  writeFileSync(join(profile, "user.js"), Object.entries(PREFS).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});\n`).join(""));
  const proc: ChildProcess = spawn(FIREFOX, ["--headless", "--no-remote", "--profile", profile, "--remote-debugging-port", "0", "about:blank"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, MOZ_CRASHREPORTER_DISABLE: "1" },
  });
  let stderr = "";
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Firefox did not start its WebDriver BiDi server in 30 s:\n${stderr}`)), 30_000);
    proc.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      const m = /WebDriver BiDi listening on (ws:\/\/\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.once("exit", (code) => reject(new Error(`Firefox exited (${code}) before it listened:\n${stderr}`)));
  });
  const ws = new WebSocket(`${address}/session`);
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  let nextId = 1;
  const pending = new Map<number, { resolve(v: Json): void; reject(e: Error): void }>();
  const listeners: Array<(method: string, params: Json) => void> = [];
  ws.on("message", (data) => {
    const msg = JSON.parse(String(data)) as { id?: number; type: string; result?: Json; error?: string; message?: string; method?: string; params?: Json };
    if (msg.id !== undefined) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.type === "error") p?.reject(new Error(`${msg.error}: ${msg.message}`));
      else p?.resolve(msg.result ?? {});
    } else if (msg.method) {
      for (const l of listeners) l(msg.method, msg.params ?? {});
    }
  });
  const send = (method: string, params: Json = {}): Promise<Json> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  const session = await send("session.new", { capabilities: {} });
  await send("session.subscribe", { events: ["log.entryAdded"] });
  const version = String((session.capabilities as Json).browserVersion);

  async function newTab(width: number, height: number): Promise<FirefoxTab> {
    const context = String((await send("browsingContext.create", { type: "tab" })).context);
    await send("browsingContext.setViewport", { context, viewport: { width, height } });
    const errors: string[] = [];
    listeners.push((method, params) => {
      const source = params.source as { context?: string } | undefined;
      if (method === "log.entryAdded" && params.type === "javascript" && source?.context === context) errors.push(String(params.text));
    });
    const run = async <T>(body: string): Promise<T> => {
      const res = await send("script.evaluate", {
        expression: `(async () => JSON.stringify(await (async () => { ${body} })() ?? null))()`,
        target: { context },
        awaitPromise: true,
        resultOwnership: "none",
      });
      if (res.type === "exception") throw new Error(`in the page: ${JSON.stringify((res.exceptionDetails as Json).text)}`);
      return JSON.parse(String((res.result as { value: string }).value)) as T;
    };
    return {
      errors,
      async goto(url) {
        await send("browsingContext.navigate", { context, url, wait: "complete" });
      },
      run,
      async until<T>(what: string, body: string, timeoutMs = 15_000): Promise<T> {
        const end = Date.now() + timeoutMs;
        for (;;) {
          // A navigation can destroy the realm mid-call: that is "not yet".
          const v = await run<T>(body).catch(() => undefined);
          if (v) return v;
          if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${errors.length ? `; page errors: ${errors.join(" | ")}` : ""}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      async screenshot(path) {
        const shot = await send("browsingContext.captureScreenshot", { context, origin: "document" });
        writeFileSync(path, Buffer.from(String(shot.data), "base64"));
      },
    };
  }

  return {
    version,
    newTab,
    async close() {
      await send("browser.close").catch(() => undefined);
      ws.close();
      if (proc.exitCode === null) await new Promise((r) => proc.once("exit", r));
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
