// The k3-ingest console: hash-routed views over the public API (api.js). Everything the
// user sees is built with DOM calls (no HTML strings), so object keys and error texts are
// shown as text, never interpreted.
import { api, ApiError, enc, token } from "./api.js";
import { fail, generation, h, navigate, render, say, writable } from "./dom.js";
import { jobsView, jobView } from "./jobs.js";
import { accessView, chartsView, configView, objectsView, searchView, sourcesView } from "./bucket-views.js";

const main = document.getElementById("main");

// ---- sign-in ----

function signIn(message) {
  document.getElementById("nav").hidden = true;
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: async (e) => {
        e.preventDefault();
        token.set(input.value.trim());
        try {
          await api("GET", "/admin/buckets?page_size=1");
          location.hash = "#/buckets";
          route();
        } catch (err) {
          token.clear();
          fail(err);
        }
      },
    },
    h("h2", {}, "Sign in"),
    h("label", { for: "token" }, "Bearer token"),
    input,
    h("p", { id: "token-help", class: "help" }, "A k3-ingest token (k3-ingest tokens create …). It stays in this tab's session storage."),
    h("button", { type: "submit" }, "Sign in"),
  );
  main.replaceChildren(form);
  if (message) say(message, "error");
  input.focus();
}

// ---- buckets ----

async function bucketsView() {
  const gen = generation;
  const res = await api("GET", "/admin/buckets?page_size=1000");
  const rows = res.buckets.map((b) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: `#/b/${enc(b.name)}/jobs` }, b.name)),
      h("td", {}, b.description),
      h("td", { class: "num" }, b.objectCount),
      h("td", { class: "num" }, `${(Number(b.storageUsedBytes) / 2 ** 20).toFixed(1)} MiB`),
      h("td", { class: "num" }, b.sourceCount),
      h("td", { class: "num" }, b.ruleCount),
      h("td", { class: "num" }, b.indexCount),
    ),
  );
  render(gen, 
    h("h2", {}, "Buckets"),
    h("table", {}, h("caption", {}, `${res.pagination?.totalCount ?? rows.length} buckets`), h("thead", {}, h("tr", {}, ...["Bucket", "Description", "Objects", "Storage", "Sources", "Rules", "Indexes"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)),
  );
}

// ---- routing ----

async function route() {
  navigate();
  if (!token.get()) return signIn();
  document.getElementById("nav").hidden = false;
  const [path, qs] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(qs ?? "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const crumbs = document.getElementById("crumbs");
  crumbs.replaceChildren(parts[0] === "b" && parts[1] ? h("a", { href: `#/b/${enc(parts[1])}/jobs` }, parts[1]) : "");
  try {
    if (parts[0] !== "b" || !parts[1]) await bucketsView();
    else if (parts[2] === "jobs" && parts[3]) await jobView(parts[1], parts[3]);
    else if (parts[2] === "config") await configView(parts[1]);
    else if (parts[2] === "objects") await objectsView(parts[1], params);
    else if (parts[2] === "access") await accessView(parts[1]);
    else if (parts[2] === "sources") await sourcesView(parts[1]);
    else if (parts[2] === "search") await searchView(parts[1]);
    else if (parts[2] === "charts") await chartsView(parts[1]);
    else await jobsView(parts[1], params);
    document.title = `${parts[1] ? `${parts[1]} · ` : ""}k3-ingest console`;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      token.clear();
      return signIn("The token was refused (expired or revoked); sign in again.");
    }
    fail(err);
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  token.clear();
  writable.clear();
  location.hash = "";
  route();
});
window.addEventListener("hashchange", route);
route();
