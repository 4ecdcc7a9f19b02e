// The k3-ingest console: hash-routed views over the public API (api.js). Everything the
// user sees is built with DOM calls (no HTML strings), so object keys and error texts are
// shown as text, never interpreted.
import { api, ApiError, enc, query, token, watchJobs } from "./api.js";
import { barChart, lineChart } from "./chart.js";

const STATUSES = ["PENDING", "PROCESSING", "COMPLETED", "FAILED", "PARTIAL", "CANCELLED"];
const TERMINAL = new Set(["COMPLETED", "FAILED", "PARTIAL", "CANCELLED"]);
const TEMPLATES = ["text_embedding_index", "structured_rows", "noop"];
const main = document.getElementById("main");
const statusBox = document.getElementById("status");
/** Cleanup of the current view (its watch, its timers). */
let leave = () => {};
/** Bumped by every navigation: a view still loading for an earlier one neither renders nor keeps its watch. */
let generation = 0;
function render(gen, ...nodes) {
  if (gen === generation) main.replaceChildren(...nodes);
}
function setLeave(gen, stop) {
  if (gen === generation) leave = stop;
  else stop();
}

/** Builds an element: h("a", { href }, "text", child…). */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false || v === null) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

const short = (s) => String(s ?? "").replace(/^INGEST_STATUS_/, "");
const time = (ms) => (Number(ms) ? new Date(Number(ms)).toLocaleString() : "");
function duration(j) {
  const start = Number(j.startedAt);
  if (!start) return "";
  const ms = (Number(j.finishedAt) || Date.now()) - start;
  return ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`;
}
function say(text, kind = "info") {
  statusBox.replaceChildren(h("p", { class: kind }, text));
}
function fail(err) {
  say(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err.message ?? err), "error");
}
function confirmAction(text) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  dlg.returnValue = "";
  dlg.showModal();
  return new Promise((resolve) => dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true }));
}

/** Whether the token may write in the bucket: a validate-only trigger is refused with 403 for a reader. */
const writable = new Map();
async function canWrite(bucket) {
  if (!writable.has(bucket)) {
    writable.set(
      bucket,
      api("POST", `/${enc(bucket)}/ingest`, { validate_only: true }).then(
        () => true,
        (err) => !(err instanceof ApiError && err.status === 403),
      ),
    );
  }
  return writable.get(bucket);
}

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

// ---- a bucket's jobs ----

function tabs(bucket, current) {
  const item = (id, label) => h("a", { href: `#/b/${enc(bucket)}/${id}`, "aria-current": current === id ? "page" : undefined }, label);
  return h("nav", { class: "tabs", "aria-label": `Bucket ${bucket}` }, item("jobs", "Jobs"), item("objects", "Objects"), item("config", "Pipelines & rules"), item("search", "Search"), item("charts", "Charts"));
}

function progressCell(j) {
  const p = j.progress;
  if (short(j.status) !== "PROCESSING") return h("td", {}, short(j.status) === "COMPLETED" ? "done" : "");
  if (!p?.stage) return h("td", {}, "running");
  if (!p.total) return h("td", {}, p.stage);
  return h("td", {}, h("progress", { max: p.total, value: p.done, "aria-label": `${p.stage} ${p.done} of ${p.total} ${p.unit}` }), ` ${p.stage} ${p.done}/${p.total}`);
}

function jobRow(bucket, j) {
  return h(
    "tr",
    { "data-job": j.jobId },
    h("td", {}, h("a", { href: `#/b/${enc(bucket)}/jobs/${enc(j.jobId)}` }, j.jobId)),
    h("td", {}, h("span", { class: `badge s-${short(j.status).toLowerCase()}` }, short(j.status))),
    h("td", { class: "key" }, j.object?.key ?? ""),
    h("td", {}, j.pipelineName),
    progressCell(j),
    h("td", { class: "num" }, j.attempts),
    h("td", {}, time(j.createdAt)),
    h("td", {}, duration(j)),
    h("td", { class: "err" }, j.error),
  );
}

async function jobsView(bucket, params) {
  const gen = generation;
  const filter = { status_filter: params.get("status") ? `INGEST_STATUS_${params.get("status")}` : "", pipeline_id: params.get("pipeline") ?? "", rule_id: params.get("rule") ?? "", source_id: params.get("source") ?? "" };
  const [pipes, rules, write] = await Promise.all([api("GET", `/${enc(bucket)}/pipelines?page_size=1000`), api("GET", `/${enc(bucket)}/rules?page_size=1000`), canWrite(bucket)]);
  const page = await api("GET", `/${enc(bucket)}/ingest/jobs${query({ ...filter, page_size: 50, page_token: params.get("page") ?? "" })}`);
  const tbody = h("tbody", {}, page.jobs.map((j) => jobRow(bucket, j)));
  const total = h("span", {}, page.pagination.totalCount);
  const live = h("span", { class: "live" }, "connecting…");
  const select = (id, label, options, value) =>
    h("label", {}, label, " ", h("select", { name: id }, h("option", { value: "" }, "any"), options.map(([v, t]) => h("option", { value: v, selected: v === value }, t))));
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (e) => {
        e.preventDefault();
        const f = new FormData(e.target);
        location.hash = `#/b/${enc(bucket)}/jobs${query({ status: f.get("status"), pipeline: f.get("pipeline"), rule: f.get("rule"), source: f.get("source") })}`;
      },
    },
    select("status", "Status", STATUSES.map((s) => [s, s]), params.get("status") ?? ""),
    select("pipeline", "Pipeline", pipes.pipelines.map((p) => [p.pipelineId, p.name]), filter.pipeline_id),
    select("rule", "Rule", rules.rules.map((r) => [r.ruleId, r.name]), filter.rule_id),
    h("label", {}, "Source ", h("input", { name: "source", value: filter.source_id, size: 12 })),
    h("button", { type: "submit" }, "Filter"),
  );
  const paging = h(
    "p",
    { class: "paging" },
    params.get("page") ? h("a", { href: `#/b/${enc(bucket)}/jobs${query({ ...Object.fromEntries(params), page: "" })}` }, "First page") : "",
    " ",
    page.pagination.nextPageToken ? h("a", { href: `#/b/${enc(bucket)}/jobs${query({ ...Object.fromEntries(params), page: page.pagination.nextPageToken })}` }, "Next page") : "",
  );
  const actions = write ? writeActions(bucket, filter, pipes.pipelines) : h("p", { class: "help" }, "Read-only token: no actions.");
  render(gen, 
    h("h2", {}, `Jobs of ${bucket}`),
    tabs(bucket, "jobs"),
    form,
    actions,
    h("p", {}, total, " matching jobs · ", live),
    h("table", {}, h("thead", {}, h("tr", {}, ...["Job", "Status", "Key", "Pipeline", "Progress", "Attempts", "Created", "Duration", "Error"].map((t) => h("th", { scope: "col" }, t)))), tbody),
    paging,
  );
  // Live: changes replace their row; new matching jobs appear on the first page.
  const stop = watchJobs(
    bucket,
    filter,
    (m) => {
      if (!m.job) return;
      const row = tbody.querySelector(`tr[data-job="${CSS.escape(m.job.jobId)}"]`);
      if (row) row.replaceWith(jobRow(bucket, m.job));
      else if (m.type === "WATCH_EVENT_TYPE_CHANGE" && !params.get("page")) {
        tbody.prepend(jobRow(bucket, m.job));
        total.textContent = String(Number(total.textContent) + 1);
      }
    },
    (state) => (live.textContent = state),
  );
  setLeave(gen, stop);
}

/** Trigger, and bulk cancel / retry of everything matching the filter (counted first). */
function writeActions(bucket, filter, pipelines) {
  const key = h("input", { id: "trigger-key", required: true, size: 30 });
  const pipe = h("select", { id: "trigger-pipeline" }, h("option", { value: "" }, "by the bucket's rules"), pipelines.map((p) => h("option", { value: p.pipelineId }, p.name)));
  const trigger = h(
    "form",
    {
      class: "inline",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const res = await api("POST", `/${enc(bucket)}/ingest`, { object: { key: key.value }, pipeline_id: pipe.value });
          say(`Triggered job ${res.job.jobId}.`);
        } catch (err) {
          fail(err);
        }
      },
    },
    h("label", { for: "trigger-key" }, "Object key"),
    key,
    h("label", { for: "trigger-pipeline" }, "Pipeline"),
    pipe,
    h("button", { type: "submit" }, "Trigger"),
  );
  const bulk = async (what, statuses, act) => {
    const asked = filter.status_filter ? [filter.status_filter.replace("INGEST_STATUS_", "")] : statuses;
    const targets = asked.filter((s) => statuses.includes(s));
    let count = 0;
    for (const s of targets) count += Number((await api("GET", `/${enc(bucket)}/ingest/jobs${query({ ...filter, status_filter: `INGEST_STATUS_${s}`, page_size: 1 })}`)).pagination.totalCount);
    if (count === 0) return say(`No ${targets.join("/") || "matching"} jobs to ${what}.`);
    if (!(await confirmAction(`${what[0].toUpperCase()}${what.slice(1)} ${count} ${targets.join("/")} job${count === 1 ? "" : "s"} matching this filter?`))) return say(`Nothing was done.`);
    let done = 0;
    let skipped = 0;
    for (const s of targets) {
      // The jobs are collected first: acting on them changes what the listing returns.
      const ids = [];
      for (let token = ""; ; ) {
        const res = await api("GET", `/${enc(bucket)}/ingest/jobs${query({ ...filter, status_filter: `INGEST_STATUS_${s}`, page_size: 1000, page_token: token })}`);
        ids.push(...res.jobs.map((j) => j.jobId));
        token = res.pagination.nextPageToken;
        if (!token) break;
      }
      for (let i = 0; i < ids.length; i += 8) {
        await Promise.all(ids.slice(i, i + 8).map((id) => act(id).then(() => done++, () => skipped++)));
        say(`${what}: ${done} done, ${skipped} skipped of ${count}…`);
      }
    }
    say(`${what}: ${done} done${skipped ? `, ${skipped} skipped (ended meanwhile, or a newer job of the object exists)` : ""}.`);
  };
  return h(
    "div",
    { class: "actions" },
    trigger,
    h("button", { type: "button", class: "danger", onclick: () => bulk("cancel", ["PENDING", "PROCESSING"], (id) => api("POST", `/${enc(bucket)}/ingest/jobs/${enc(id)}:cancel`, {})).catch(fail) }, "Cancel all matching…"),
    h("button", { type: "button", onclick: () => bulk("retry", ["FAILED", "PARTIAL"], (id) => api("POST", `/${enc(bucket)}/ingest`, { retry_of: id })).catch(fail) }, "Retry all matching…"),
  );
}

// ---- one job ----

async function jobView(bucket, jobId) {
  const gen = generation;
  const [{ job }, write] = await Promise.all([api("GET", `/${enc(bucket)}/ingest/jobs/${enc(jobId)}`), canWrite(bucket)]);
  const chain = [];
  for (let id = job.retryOf; id && chain.length < 20; ) {
    const prev = await api("GET", `/${enc(bucket)}/ingest/jobs/${enc(id)}`).catch(() => undefined);
    if (!prev) break;
    chain.push(prev.job);
    id = prev.job.retryOf;
  }
  const body = h("div", {});
  const show = (j) => {
    const field = (k, v) => [h("dt", {}, k), h("dd", {}, v ?? "")];
    const status = short(j.status);
    body.replaceChildren(
      h("dl", { class: "fields" },
        field("Status", h("span", { class: `badge s-${status.toLowerCase()}` }, status)),
        field("Object", j.object?.key),
        field("Pipeline", `${j.pipelineName} (${j.pipelineId})`),
        field("Rule", j.ruleId || "—"),
        field("Progress", j.progress?.stage ? `${j.progress.stage} ${j.progress.done}/${j.progress.total} ${j.progress.unit}` : "—"),
        field("Counters", `chunks ${j.chunksCreated}, embeddings ${j.embeddingsCreated} (${j.embeddingsWritten} written), rows ${j.rowsWritten}, ${j.outputSize} bytes`),
        field("Attempts", j.attempts),
        field("Created", time(j.createdAt)),
        field("Started", time(j.startedAt)),
        field("Finished", time(j.finishedAt)),
        field("Duration", duration(j)),
        field("Next attempt", time(j.nextAttemptAt) || "—"),
        field("Output is live", j.outputCurrent ? "yes" : "no"),
        field("request_id (idempotency key)", j.requestId || "—"),
      ),
      j.error ? h("section", {}, h("h3", {}, "Error"), h("p", { class: "err" }, j.error), h("pre", {}, j.errorDetails)) : "",
      chain.length ? h("section", {}, h("h3", {}, "Retry chain"), h("ol", {}, chain.map((c) => h("li", {}, h("a", { href: `#/b/${enc(bucket)}/jobs/${enc(c.jobId)}` }, c.jobId), ` ${short(c.status)} ${c.error}`)))) : "",
      write
        ? h("p", { class: "actions" },
            !TERMINAL.has(status) ? h("button", { type: "button", class: "danger", onclick: () => act("cancel", () => api("POST", `/${enc(bucket)}/ingest/jobs/${enc(j.jobId)}:cancel`, {})) }, "Cancel") : "",
            ["FAILED", "PARTIAL", "CANCELLED"].includes(status) ? h("button", { type: "button", onclick: () => act("retry", () => api("POST", `/${enc(bucket)}/ingest`, { retry_of: j.jobId })) }, "Retry") : "",
          )
        : "",
    );
  };
  const act = async (what, call) => {
    if (!(await confirmAction(`${what[0].toUpperCase()}${what.slice(1)} job ${jobId}?`))) return;
    try {
      const res = await call();
      say(what === "retry" ? `Retried as job ${res.job.jobId}.` : `Cancel requested.`);
      if (what === "retry") location.hash = `#/b/${enc(bucket)}/jobs/${enc(res.job.jobId)}`;
    } catch (err) {
      fail(err);
    }
  };
  show(job);
  render(gen, h("h2", {}, `Job ${jobId}`), tabs(bucket, "jobs"), body);
  setLeave(gen, watchJobs(bucket, { job_id: jobId }, (m) => m.job && show(m.job)));
}

// ---- objects ----

/** A bucket's objects by key prefix, each with the state of its latest job per pipeline. */
async function objectsView(bucket, params) {
  const gen = generation;
  const prefix = params.get("prefix") ?? "";
  const res = await api("GET", `/${enc(bucket)}/objects${query({ prefix, max_keys: 50, continuation_token: params.get("after") ?? "" })}`);
  // Each object's index status comes from its info (one call each, eight at a time).
  const infos = new Array(res.objects.length);
  for (let i = 0; i < res.objects.length; i += 8) {
    await Promise.all(res.objects.slice(i, i + 8).map(async (o, j) => {
      const path = o.key.split("/").map(enc).join("/");
      infos[i + j] = (await api("GET", `/${enc(bucket)}/objects/${path}/info`).catch(() => ({ object: o }))).object;
    }));
  }
  const input = h("input", { id: "prefix", name: "prefix", value: prefix, size: 30 });
  const status = (o) =>
    (o.indexStatus ?? []).length
      ? h("ul", { class: "plain" }, o.indexStatus.map((s) => h("li", {}, `${s.pipelineName}: `, h("a", { href: `#/b/${enc(bucket)}/jobs/${enc(s.jobId)}` }, h("span", { class: `badge s-${short(s.status).toLowerCase()}` }, short(s.status))), s.error ? ` ${s.error}` : "")))
      : "not indexed";
  render(
    gen,
    h("h2", {}, `Objects of ${bucket}`),
    tabs(bucket, "objects"),
    h("form", {
        class: "filters",
        onsubmit: (e) => {
          e.preventDefault();
          location.hash = `#/b/${enc(bucket)}/objects${query({ prefix: input.value })}`;
        },
      },
      h("label", { for: "prefix" }, "Key prefix"), input, h("button", { type: "submit" }, "List"),
    ),
    h("table", {}, h("thead", {}, h("tr", {}, ...["Key", "Size", "Type", "Modified", "Index status (latest job per pipeline)"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, infos.map((o) => h("tr", {}, h("td", { class: "key" }, o.key), h("td", { class: "num" }, o.size), h("td", {}, o.contentType), h("td", {}, time(o.lastModified)), h("td", {}, status(o)))))),
    res.nextContinuationToken ? h("p", { class: "paging" }, h("a", { href: `#/b/${enc(bucket)}/objects${query({ prefix, after: res.nextContinuationToken })}` }, "Next page")) : "",
  );
}

// ---- pipelines and rules ----

async function configView(bucket) {
  const gen = generation;
  const [pipes, rules, write] = await Promise.all([api("GET", `/${enc(bucket)}/pipelines?page_size=1000`), api("GET", `/${enc(bucket)}/rules?page_size=1000`), canWrite(bucket)]);
  const jobsOf = async (k, v) => Number((await api("GET", `/${enc(bucket)}/ingest/jobs${query({ [k]: v, page_size: 1 })}`)).pagination.totalCount);
  const pipeCounts = await Promise.all(pipes.pipelines.map((p) => jobsOf("pipeline_id", p.pipelineId)));
  const ruleCounts = await Promise.all(rules.rules.map((r) => jobsOf("rule_id", r.ruleId)));
  const checkKey = h("input", { id: "check-key", required: true, size: 30 });
  const answer = h("p", { "aria-live": "polite" });
  const forms = [];
  if (write) {
    const pname = h("input", { id: "pipe-name", required: true });
    const ptemplate = h("select", { id: "pipe-template" }, TEMPLATES.map((t) => h("option", { value: t }, t)));
    forms.push(
      h("form", {
          class: "card",
          onsubmit: async (e) => {
            e.preventDefault();
            try {
              await api("POST", `/${enc(bucket)}/pipelines`, { name: pname.value, scriptum_template: ptemplate.value });
              say(`Pipeline ${pname.value} created.`);
              route();
            } catch (err) {
              fail(err);
            }
          },
        },
        h("h3", {}, "New pipeline"), h("label", { for: "pipe-name" }, "Name"), pname, h("label", { for: "pipe-template" }, "Template"), ptemplate, h("button", { type: "submit" }, "Create pipeline"),
      ),
    );
    const rname = h("input", { id: "rule-name", required: true });
    const rpipe = h("select", { id: "rule-pipeline", required: true }, pipes.pipelines.map((p) => h("option", { value: p.pipelineId }, p.name)));
    const rinclude = h("input", { id: "rule-include", placeholder: "docs/**, *.pdf" });
    const rprio = h("input", { id: "rule-priority", type: "number", value: "0" });
    forms.push(
      h("form", {
          class: "card",
          onsubmit: async (e) => {
            e.preventDefault();
            try {
              const include = rinclude.value.split(",").map((s) => s.trim()).filter(Boolean);
              await api("POST", `/${enc(bucket)}/rules`, { name: rname.value, pipeline_id: rpipe.value, include_patterns: include, priority: Number(rprio.value) });
              say(`Rule ${rname.value} created.`);
              route();
            } catch (err) {
              fail(err);
            }
          },
        },
        h("h3", {}, "New rule"), h("label", { for: "rule-name" }, "Name"), rname, h("label", { for: "rule-pipeline" }, "Pipeline"), rpipe,
        h("label", { for: "rule-include" }, "Include patterns (comma-separated)"), rinclude, h("label", { for: "rule-priority" }, "Priority"), rprio, h("button", { type: "submit" }, "Create rule"),
      ),
    );
  }
  render(gen, 
    h("h2", {}, `Pipelines & rules of ${bucket}`),
    tabs(bucket, "config"),
    h("table", {}, h("caption", {}, "Pipelines"), h("thead", {}, h("tr", {}, ...["Name", "Template", "Kind", "Id", "Jobs"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, pipes.pipelines.map((p, i) => h("tr", {}, h("td", {}, p.name), h("td", {}, p.scriptumTemplate), h("td", {}, p.storeEntityKind), h("td", {}, p.pipelineId), h("td", { class: "num" }, h("a", { href: `#/b/${enc(bucket)}/jobs${query({ pipeline: p.pipelineId })}` }, pipeCounts[i])))))),
    h("table", {}, h("caption", {}, "Rules"), h("thead", {}, h("tr", {}, ...["Name", "Pipeline", "Include", "Priority", "Enabled", "Jobs"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rules.rules.map((r, i) => h("tr", {}, h("td", {}, r.name), h("td", {}, r.binding?.pipelineName || r.pipelineId), h("td", { class: "key" }, r.includePatterns.join(", ")), h("td", { class: "num" }, r.priority), h("td", {}, r.enabled ? "yes" : "no"), h("td", { class: "num" }, h("a", { href: `#/b/${enc(bucket)}/jobs${query({ rule: r.ruleId })}` }, ruleCounts[i])))))),
    h("form", {
        class: "card",
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            const res = await api("POST", `/${enc(bucket)}/ingest`, { object: { key: checkKey.value }, validate_only: true });
            const rule = rules.rules.find((r) => r.ruleId === res.job.ruleId);
            answer.textContent = rule ? `Rule "${rule.name}" catches it: pipeline ${res.job.pipelineName}.` : `Pipeline ${res.job.pipelineName}.`;
          } catch (err) {
            answer.textContent = err.message;
          }
        },
      },
      h("h3", {}, "Which rule would catch this key?"), h("label", { for: "check-key" }, "Object key (it must exist)"), checkKey, h("button", { type: "submit" }, "Check"), answer,
    ),
    ...forms,
  );
}

// ---- search ----

async function searchView(bucket) {
  const gen = generation;
  const q = h("input", { id: "q", type: "search", required: true, size: 40 });
  const results = h("ol", { class: "results" });
  render(gen, 
    h("h2", {}, `Search ${bucket}`),
    tabs(bucket, "search"),
    h("form", {
        role: "search",
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            const res = await api("POST", `/${enc(bucket)}/vector/search`, { text: q.value, top_k: 10, include_content: true });
            results.replaceChildren(...res.results.map((r) => h("li", {}, h("strong", {}, r.object.key), ` score ${r.score.toFixed(3)}${r.page ? ` · page ${r.page}` : ""}`, h("p", {}, (r.content ?? "").slice(0, 300)))));
            if (!res.results.length) results.replaceChildren(h("li", {}, "No results."));
          } catch (err) {
            fail(err);
          }
        },
      },
      h("label", { for: "q" }, "Query"), q, h("button", { type: "submit" }, "Search"),
    ),
    results,
  );
  q.focus();
}

// ---- charts ----

/** Prometheus text -> {name{labels}: value}. */
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? ([0-9.eE+-]+|NaN|\+Inf)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? "").matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function quantile(buckets, q) {
  const total = buckets[buckets.length - 1]?.[1] ?? 0;
  if (!total) return NaN;
  for (const [le, n] of buckets) if (n >= q * total) return le;
  return NaN;
}

async function chartsView(bucket) {
  const gen = generation;
  const samples = [];
  const box = h("div", { class: "charts" });
  render(gen, h("h2", {}, `Charts of ${bucket}`), tabs(bucket, "charts"), h("p", { class: "help" }, "Sampled every 3 s while this page is open."), box);
  const sample = async () => {
    const counts = {};
    await Promise.all(STATUSES.map(async (s) => (counts[s] = Number((await api("GET", `/${enc(bucket)}/ingest/jobs${query({ status_filter: `INGEST_STATUS_${s}`, page_size: 1 })}`)).pagination.totalCount))));
    samples.push({ t: Date.now(), counts });
    if (samples.length > 200) samples.shift();
    let metrics = [];
    try {
      const res = await fetch("/metrics", { headers: { authorization: `Bearer ${token.get()}` } });
      if (res.ok) metrics = parseMetrics(await res.text());
    } catch {
      // no metrics: the charts that need them say so
    }
    const series = STATUSES.map((s) => ({ name: s, points: samples.map((x) => [x.t, x.counts[s]]) }));
    const throughput = samples.slice(1).map((x, i) => [x.t, Math.max(0, (x.counts.COMPLETED - samples[i].counts.COMPLETED) / ((x.t - samples[i].t) / 1000))]);
    const age = metrics.find((m) => m.name === "k3_queue_oldest_pending_age_seconds");
    const byTemplate = new Map();
    for (const m of metrics.filter((x) => x.name === "k3_job_duration_seconds_bucket")) {
      const key = m.labels.template;
      const le = m.labels.le === "+Inf" ? Infinity : Number(m.labels.le);
      const list = byTemplate.get(key) ?? new Map();
      list.set(le, (list.get(le) ?? 0) + m.value);
      byTemplate.set(key, list);
    }
    const durations = [];
    for (const [template, list] of byTemplate) {
      const sorted = [...list.entries()].sort((a, b) => a[0] - b[0]);
      const p50 = quantile(sorted, 0.5);
      const p99 = quantile(sorted, 0.99);
      if (Number.isFinite(p50)) durations.push([`${template} p50`, p50], [`${template} p99`, Number.isFinite(p99) ? p99 : p50]);
    }
    box.replaceChildren(
      h("figure", {}, lineChart("Jobs by status over time", series), h("figcaption", {}, "Jobs by status")),
      h("figure", {}, lineChart("Throughput, completed jobs per second", [{ name: "completed/s", points: throughput }]), h("figcaption", {}, "Throughput (completed/s)")),
      h("figure", {}, barChart("Job duration by template (this server's worker), seconds, bucket upper bounds", durations, { unit: " s" }), h("figcaption", {}, "p50 / p99 duration by template")),
      h("p", {}, age ? `Oldest PENDING job (organization): ${age.value.toFixed(1)} s` : "Queue age needs /metrics with K3_METRICS_AUTH=on and an admin token."),
    );
  };
  await sample();
  const timer = setInterval(() => sample().catch(fail), 3000);
  setLeave(gen, () => clearInterval(timer));
}

// ---- routing ----

async function route() {
  generation++;
  leave();
  leave = () => {};
  statusBox.replaceChildren();
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
