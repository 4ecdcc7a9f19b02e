// The jobs views: a bucket's jobs (filters, paging, live rows, trigger and bulk actions)
// and one job (its fields, error, retry chain, cancel and retry).
import { api, enc, query, watchJobs } from "./api.js";
import { canWrite, confirmAction, duration, fail, generation, h, render, say, setLeave, short, STATUSES, TERMINAL, time, tabs } from "./dom.js";

// ---- a bucket's jobs ----


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

export async function jobsView(bucket, params) {
  const gen = generation;
  const filter = { status_filter: params.get("status") ? `INGEST_STATUS_${params.get("status")}` : "", pipeline_id: params.get("pipeline") ?? "", rule_id: params.get("rule") ?? "", source_id: params.get("source") ?? "", key_prefix: params.get("prefix") ?? "" };
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
        location.hash = `#/b/${enc(bucket)}/jobs${query({ status: f.get("status"), pipeline: f.get("pipeline"), rule: f.get("rule"), source: f.get("source"), prefix: f.get("prefix") })}`;
      },
    },
    select("status", "Status", STATUSES.map((s) => [s, s]), params.get("status") ?? ""),
    select("pipeline", "Pipeline", pipes.pipelines.map((p) => [p.pipelineId, p.name]), filter.pipeline_id),
    select("rule", "Rule", rules.rules.map((r) => [r.ruleId, r.name]), filter.rule_id),
    h("label", {}, "Source ", h("input", { name: "source", value: filter.source_id, size: 12 })),
    h("label", {}, "Key prefix ", h("input", { name: "prefix", value: filter.key_prefix, size: 16 })),
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
  let newest = Math.max(0, ...page.jobs.map((j) => Number(j.createdAt)));
  const stop = watchJobs(
    bucket,
    filter,
    (m) => {
      if (!m.job) return;
      const row = tbody.querySelector(`tr[data-job="${CSS.escape(m.job.jobId)}"]`);
      if (row) row.replaceWith(jobRow(bucket, m.job));
      else if (m.type === "WATCH_EVENT_TYPE_CHANGE" && !params.get("page") && Number(m.job.createdAt) >= newest) {
        // A job newer than the first row belongs on top (the list is newest first); a change of
        // an older job that is not on this page stays where it is listed.
        newest = Number(m.job.createdAt);
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

export async function jobView(bucket, jobId) {
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
        field("Trace id (x-request-id)", j.traceId || "—"),
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
  // The lines the answering instance still holds about the job; read again when it ends.
  const logs = h("section", {}, h("h3", {}, "Log lines"));
  const loadLogs = async () => {
    const res = await api("GET", `/${enc(bucket)}/ingest/jobs/${enc(jobId)}/logs`).catch(() => undefined);
    if (!res) return logs.replaceChildren(h("h3", {}, "Log lines"), h("p", { class: "help" }, "Not available."));
    const line = (l) => {
      try {
        const { time: at, level, msg, ...rest } = JSON.parse(l);
        return h("li", {}, h("code", {}, `${at} ${level} ${msg} ${JSON.stringify(rest)}`));
      } catch {
        return h("li", {}, h("code", {}, l));
      }
    };
    logs.replaceChildren(
      h("h3", {}, "Log lines"),
      h("p", { class: "help" }, `${res.lines.length} line${res.lines.length === 1 ? "" : "s"} held by ${res.instance}. Other instances log this job with requestId ${res.traceId || "—"}.`),
      res.lines.length ? h("ol", { class: "log" }, res.lines.map(line)) : "",
    );
  };
  show(job);
  render(gen, h("h2", {}, `Job ${jobId}`), tabs(bucket, "jobs"), body, logs);
  void loadLogs();
  setLeave(
    gen,
    watchJobs(bucket, { job_id: jobId }, (m) => {
      if (!m.job) return;
      show(m.job);
      if (TERMINAL.has(short(m.job.status))) void loadLogs();
    }),
  );
}

