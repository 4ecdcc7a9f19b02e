// The other views of a bucket: objects, pipelines and rules, access, sources, search, charts.
import { api, ApiError, enc, query, token } from "./api.js";
import { barChart, lineChart } from "./chart.js";
import { canWrite, fail, generation, h, render, say, setLeave, short, STATUSES, TEMPLATES, time, tabs } from "./dom.js";

/** Shows the current view again (after a change it lists). */
const rerender = () => window.dispatchEvent(new HashChangeEvent("hashchange"));

/** A card form whose submit runs `create` (its answer is said), then shows the view again. */
function createForm(title, fields, submit, create) {
  return h(
    "form",
    {
      class: "card",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          say(await create());
          rerender();
        } catch (err) {
          fail(err);
        }
      },
    },
    h("h3", {}, title),
    ...fields,
    h("button", { type: "submit" }, submit),
  );
}

// ---- objects ----

/** A bucket's objects by key prefix, each with the state of its latest job per pipeline. */
export async function objectsView(bucket, params) {
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
  const tagList = (tags) => Object.entries(tags ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");
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
    h("table", {}, h("thead", {}, h("tr", {}, ...["Key", "Size", "Type", "Modified", "Tags", "Index status (latest job per pipeline)"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, infos.map((o) => h("tr", {}, h("td", { class: "key" }, o.key), h("td", { class: "num" }, o.size), h("td", {}, o.contentType), h("td", {}, time(o.lastModified)), h("td", {}, tagList(o.tags)), h("td", {}, status(o)))))),
    res.nextContinuationToken ? h("p", { class: "paging" }, h("a", { href: `#/b/${enc(bucket)}/objects${query({ prefix, after: res.nextContinuationToken })}` }, "Next page")) : "",
  );
}

// ---- pipelines and rules ----

export async function configView(bucket) {
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
      createForm("New pipeline", [h("label", { for: "pipe-name" }, "Name"), pname, h("label", { for: "pipe-template" }, "Template"), ptemplate], "Create pipeline", async () => {
        await api("POST", `/${enc(bucket)}/pipelines`, { name: pname.value, scriptum_template: ptemplate.value });
        return `Pipeline ${pname.value} created.`;
      }),
    );
    const rname = h("input", { id: "rule-name", required: true });
    const rpipe = h("select", { id: "rule-pipeline", required: true }, pipes.pipelines.map((p) => h("option", { value: p.pipelineId }, p.name)));
    const rinclude = h("input", { id: "rule-include", placeholder: "docs/**, *.pdf" });
    const rprio = h("input", { id: "rule-priority", type: "number", value: "0" });
    forms.push(
      createForm(
        "New rule",
        [h("label", { for: "rule-name" }, "Name"), rname, h("label", { for: "rule-pipeline" }, "Pipeline"), rpipe, h("label", { for: "rule-include" }, "Include patterns (comma-separated)"), rinclude, h("label", { for: "rule-priority" }, "Priority"), rprio],
        "Create rule",
        async () => {
          const include = rinclude.value.split(",").map((x) => x.trim()).filter(Boolean);
          await api("POST", `/${enc(bucket)}/rules`, { name: rname.value, pipeline_id: rpipe.value, include_patterns: include, priority: Number(rprio.value) });
          return `Rule ${rname.value} created.`;
        },
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

// ---- access: the bucket's policy and CORS rules ----

/** What `path` answers, or null when it answers 404 (the bucket has no such setting). */
const setting = (path) => api("GET", path).catch((err) => (err instanceof ApiError && err.status === 404 ? null : Promise.reject(err)));
const listed = (v) => (Array.isArray(v) ? v.join(", ") : typeof v === "string" ? v : JSON.stringify(v));

/** Who may reach the bucket beyond tokens' own grants: its policy's statements and its CORS rules (read only). */
export async function accessView(bucket) {
  const gen = generation;
  const [policy, cors] = await Promise.all([setting(`/admin/buckets/${enc(bucket)}/policy`), setting(`/admin/buckets/${enc(bucket)}/cors`)]);
  const doc = policy?.policy?.document;
  const statements = doc ? (Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement]) : [];
  const th = (titles) => h("thead", {}, h("tr", {}, ...titles.map((t) => h("th", { scope: "col" }, t))));
  render(gen,
    h("h2", {}, `Access to ${bucket}`),
    tabs(bucket, "access"),
    policy
      ? h("p", {}, policy.policy.public ? h("strong", {}, "Public: ") : "", policy.policy.public ? "requests without credentials reach what the policy allows to everyone (\"*\")." : "The policy names tokens only; every request needs credentials.")
      : h("p", {}, "No policy: only tokens' own grants reach this bucket."),
    statements.length
      ? h("table", {}, h("caption", {}, "Policy statements"), th(["Sid", "Effect", "Principal", "Actions", "Resources"]),
          h("tbody", {}, statements.map((st) => h("tr", {}, h("td", {}, st.Sid ?? ""), h("td", {}, h("span", { class: `badge ${st.Effect === "Deny" ? "s-failed" : "s-completed"}` }, st.Effect)), h("td", { class: "key" }, listed(st.Principal)), h("td", { class: "key" }, listed(st.Action)), h("td", { class: "key" }, listed(st.Resource))))))
      : "",
    cors
      ? h("table", {}, h("caption", {}, "CORS rules (web pages on other origins)"), th(["Id", "Origins", "Methods", "Headers", "Exposed", "Max age"]),
          h("tbody", {}, cors.rules.map((r) => h("tr", {}, h("td", {}, r.id ?? ""), h("td", { class: "key" }, (r.allowedOrigins ?? []).join(", ")), h("td", {}, (r.allowedMethods ?? []).join(", ")), h("td", {}, (r.allowedHeaders ?? []).join(", ")), h("td", {}, (r.exposeHeaders ?? []).join(", ")), h("td", { class: "num" }, r.maxAgeSeconds ?? "")))))
      : h("p", {}, "No CORS rules: web pages on other origins cannot use this bucket's byte plane."),
    h("p", { class: "help" }, "An admin changes these with k3-ingest buckets policy|cors NAME --set FILE, aws s3api put-bucket-policy / put-bucket-cors, or PUT /admin/buckets/NAME/policy and /cors."),
  );
}

// ---- sources ----

/**
 * A bucket's sources with their objects and their last sync; a writer starts a discovery
 * ("Sync now") or re-runs the objects whose latest job failed. While one syncs, its row
 * follows it in place (every 2 s).
 */
export async function sourcesView(bucket) {
  const gen = generation;
  const [res, write] = await Promise.all([api("GET", `/${enc(bucket)}/sources?page_size=100`), canWrite(bucket)]);
  const syncOf = (s) => api("GET", `/${enc(bucket)}/sources/${enc(s.sourceId)}/sync`);
  const last = (st) => {
    if (st.syncing) return `syncing: ${st.current?.scanned ?? 0} scanned`;
    const l = st.last;
    if (!l) return "never synced";
    return `${l.state} ${time(l.finishedAt)}: ${l.newObjects} new, ${l.modified} modified, ${l.deleted} deleted${l.error ? ` — ${l.error}` : ""}`;
  };
  const rows = res.sources.map((s) => {
    const cells = { objects: h("td", { class: "num" }), indexed: h("td", { class: "num" }), last: h("td", { class: "text", "aria-live": "polite" }) };
    const show = (st) => {
      cells.objects.textContent = st.totalObjects;
      cells.indexed.textContent = st.indexedObjects;
      cells.last.textContent = last(st);
      return st.syncing;
    };
    const act = (label, path, body) =>
      h("button", {
        type: "button",
        onclick: async () => {
          try {
            say((await api("POST", `/${enc(bucket)}/sources/${enc(s.sourceId)}/${path}`, body)).message);
            follow();
          } catch (err) {
            fail(err);
          }
        },
      }, label);
    const where = s.externalS3 ? h("td", { class: "key" }, `${s.externalS3.endpoint} · ${s.externalS3.bucket}`) : h("td", { class: "text" }, "the bucket's folder and byte plane");
    const row = h("tr", {},
      h("td", {}, h("a", { href: `#/b/${enc(bucket)}/jobs${query({ source: s.sourceId })}`, title: "its jobs" }, s.name)),
      h("td", {}, s.provider.replace(/^SOURCE_PROVIDER_/, "")), where, h("td", { class: "key" }, s.rootPath),
      cells.objects, cells.indexed, cells.last,
      write ? h("td", {}, act("Sync now", "discover", {}), " ", act("Retry failed", "ingest", { retry_failed: true })) : "",
    );
    return { s, row, show };
  });
  // Follows the rows while any syncs; a newer view stops it.
  let timer;
  const follow = async () => {
    clearTimeout(timer);
    const states = await Promise.all(rows.map((r) => syncOf(r.s)));
    if (gen !== generation) return;
    if (rows.map((r, i) => r.show(states[i])).some(Boolean)) timer = setTimeout(() => follow().catch(fail), 2000);
  };
  setLeave(gen, () => clearTimeout(timer));
  await follow();
  render(gen,
    h("h2", {}, `Sources of ${bucket}`),
    tabs(bucket, "sources"),
    h("table", {}, h("caption", {}, `${res.pagination?.totalCount ?? rows.length} sources`),
      h("thead", {}, h("tr", {}, ...["Source", "Provider", "Where", "Root path", "Objects", "Indexed", "Last sync", ...(write ? ["Actions"] : [])].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map((r) => r.row))),
  );
}

// ---- search ----

export async function searchView(bucket) {
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

export async function chartsView(bucket) {
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

