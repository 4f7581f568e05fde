// The operations console: one section per pipeline part, each from a /v1/console endpoint.
import { barChart } from "./chart.js";
import { bytes, el, fmt, getJson, nothingYet, table } from "./api.js";

function fill(id, ...nodes) {
  document.querySelector(`#${id} .body`).replaceChildren(...nodes);
}

async function section(id, url, render) {
  try {
    fill(id, ...[render(await getJson(url))].flat());
  } catch (e) {
    fill(id, el("p", { class: "error" }, `${url}: ${e.message}`));
  }
}

function topics(doc) {
  if (!doc.topics.length) return nothingYet(`no topics in the ${doc.log} log`);
  const rows = doc.topics.map((t) => [
    t.topic, t.partitions.length, t.records, t.end,
    t.lag === null ? "—" : lagBadge(t.lag),
    el("span", { class: "sparts" }, t.partitions.map((p) => `${p.partition}:${p.end}`).join(" ")),
  ]);
  return [
    el("p", { class: "muted" }, `${doc.log} log · lag of consumer group ${doc.group}`),
    table(["topic", "parts", "records", "end offset", "lag", "end by partition"], rows, { id: "topics-table" }),
  ];
}

function lagBadge(lag) {
  return el("span", { class: lag === 0 ? "ok" : "warn" }, fmt(lag));
}

function lake(doc) {
  if (!doc.tables.length) return nothingYet(`the lake at ${doc.uri} is empty`);
  const rows = doc.tables.map((t) => [
    `${t.prefix}/${t.table}`, t.partitions, t.complete, t.files, bytes(t.bytes),
    t.latest ?? "—", t.latest_complete ? el("span", { class: "ok" }, "_SUCCESS") : el("span", { class: "warn" }, "open"),
  ]);
  return table(["table", "partitions", "_SUCCESS", "files", "size", "latest", "latest marked"], rows, { id: "lake-table" });
}

function jobs(doc) {
  if (!doc.runs.length) return nothingYet("no job has run (homefeed run)");
  const rows = doc.runs.map((r) => [
    r.started_at.slice(0, 19).replace("T", " "), r.job, r.partition, r.engine,
    el("span", { class: r.status === "ok" ? "ok" : "bad", title: r.error ?? "" }, r.status),
    r.rows_in, r.rows_out, `${r.duration_s.toFixed(2)} s`,
  ]);
  return table(["started", "job", "partition", "engine", "status", "rows in", "rows out", "duration"], rows, { id: "jobs-table" });
}

function models(doc) {
  if (!doc.models.length) return nothingYet("no model registered (homefeed models register)");
  return doc.models.map((m) => el("div", { class: "model" },
    el("h3", {}, m.name, " ", el("span", { class: "muted" }, `production: ${m.production ?? "none"}`)),
    m.error ? el("p", { class: "error" }, m.error) : null,
    m.versions.length ? table(["version", "created", "size", "metrics", ""],
      [...m.versions].reverse().map((v) => [
        v.version, v.created_at.slice(0, 19).replace("T", " "), bytes(v.bytes), metricsText(v.metrics),
        v.production ? el("span", { class: "ok prod" }, "production") : "",
      ]), { class: "models-table" }) : null,
    deploy(m.deploy),
  ));
}

function metricsText(metrics) {
  const flat = Object.entries(metrics).filter(([, v]) => typeof v === "number");
  return flat.slice(0, 4).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") || "—";
}

function deploy(state) {
  if (!state) return el("p", { class: "muted" }, "deploy: no state yet");
  const rows = Object.entries(state).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
  return el("div", { class: "deploy" }, el("h4", {}, "deploy / canary"), table(["key", "value"], rows));
}

function experiments(doc) {
  if (!doc.experiments.length) return nothingYet("no experiment configured ([experiments.definitions])");
  return doc.experiments.map((x) => {
    const box = el("div", { class: "experiment", "data-experiment": x.name },
      el("h3", {}, x.name, " ", el("span", { class: "muted" }, `${x.start.slice(0, 10)} → ${x.end ? x.end.slice(0, 10) : "open"}`)),
      el("p", { class: "muted" }, x.variants.map((v) => `${v.name} ${v.weight} → ${v.target || "-"}`).join(" · ")),
      el("div", { class: "report" }, doc.has_exposures ? "loading report…" : nothingYet("no exposures in the lake")),
    );
    if (doc.has_exposures) loadReport(x.name, box.querySelector(".report"));
    return box;
  });
}

async function loadReport(name, box) {
  try {
    box.replaceChildren(renderReport(await getJson(`/v1/console/experiments/${encodeURIComponent(name)}/report`)));
  } catch (e) {
    box.replaceChildren(el("p", { class: "error" }, `report: ${e.message}`));
  }
}

function renderReport(r) {
  const users = Object.values(r.users).reduce((a, b) => a + b, 0);
  if (!users) return nothingYet("no exposures of this experiment yet");
  const charts = Object.entries(r.summaries).map(([metric, byVariant]) =>
    barChart(Object.entries(byVariant).map(([variant, s]) => ({
      label: variant, value: s.mean, lo: s.ci.lo, hi: s.ci.hi, highlight: variant === r.control,
    })), { title: `${metric} per user (${Math.round(r.confidence * 100)}% CI)` }));
  const srm = r.srm
    ? el("p", { class: r.srm.mismatch ? "bad" : "muted" },
        `sample ratio: ${JSON.stringify(r.srm.observed)}, p ${fmt(r.srm.p_value)}${r.srm.mismatch ? " — MISMATCH" : ""}`)
    : null;
  const lifts = Object.entries(r.effects).flatMap(([metric, byVariant]) => Object.entries(byVariant).map(([v, e]) => [
    metric, v, e.lift === null ? "—" : `${(e.lift * 100).toFixed(1)}%`,
    e.lift_ci.lo === null ? "—" : `[${(e.lift_ci.lo * 100).toFixed(1)}%, ${(e.lift_ci.hi * 100).toFixed(1)}%]`, e.p_value,
  ]));
  return el("div", {},
    el("p", { class: "muted" }, `${users} exposed users · control: ${r.control}`),
    el("div", { class: "charts" }, charts), srm,
    lifts.length ? table(["metric", "variant", "lift", "lift CI", "p"], lifts) : null);
}

section("topics", "/v1/console/topics", topics);
section("lake", "/v1/console/lake", lake);
section("jobs", "/v1/console/jobs?limit=20", jobs);
section("models", "/v1/console/models", models);
section("experiments", "/v1/console/experiments", experiments);
