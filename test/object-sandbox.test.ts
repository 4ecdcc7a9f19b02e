/**
 * Objects are served from the web console's origin, so an uploaded HTML page must not run
 * there: opened in Chromium through a presigned URL, in the tab where the console keeps its
 * token, its script does not run (Content-Security-Policy: sandbox), and no response of an
 * object lets the browser guess an active type (X-Content-Type-Options: nosniff).
 */
import type { Browser } from "playwright-core";
import { launchChromium } from "./helpers/chromium";
import { jsonClient } from "./helpers/http";
import { startServers, type TestServers } from "./helpers/servers";
import { insertToken } from "./helpers/tokens";

const B = "kb-sandbox";
let s: TestServers;
let browser: Browser;
let auth: Record<string, string>;

beforeAll(async () => {
  s = await startServers({ K3_AUTH: "on" });
  auth = { authorization: `Bearer ${(await insertToken(s, "default", [{ bucket: "*", role: "admin" }])).token}` };
  expect((await jsonClient(() => s.httpUrl, auth)("POST", "/admin/buckets", { name: B })).status).toBe(200);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

test("an uploaded HTML page opened through a presigned URL renders without running its script, even in the console's tab", async () => {
  const page = `<html><head><title>inert</title></head><body><p id="p">an uploaded page</p><script>document.title = "ran, token " + (sessionStorage.getItem("k3-console-token") ?? "none");</script></body></html>`;
  const put = await fetch(`${s.httpUrl}/${B}/pages/evil.html`, { method: "PUT", headers: { ...auth, "content-type": "text/html" }, body: page });
  expect(put.status).toBe(200);
  const url = (await jsonClient(() => s.httpUrl, auth)("GET", `/${B}/objects/pages/evil.html/url`)).json.url as string;

  const got = await fetch(url);
  expect(got.headers.get("content-type")).toBe("text/html");
  expect(got.headers.get("content-security-policy")).toBe("sandbox");
  expect(got.headers.get("x-content-type-options")).toBe("nosniff");

  const tab = await browser.newPage();
  await tab.goto(`${new URL(url).origin}/console/`); // the console on the presigned URL's origin (K3_PUBLIC_URL)
  await tab.evaluate('sessionStorage.setItem("k3-console-token", "the-console-token")');
  await tab.goto(url);
  expect(await tab.textContent("#p")).toBe("an uploaded page");
  expect(await tab.title()).toBe("inert");
  expect(await tab.evaluate("window.origin")).toBe("null");
});
