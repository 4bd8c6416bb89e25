// The console's Reports view: the availability and response reports of a period, and the
// CSV the CLI prints. Loaded before console.js, whose helpers (el, t, api, me, redraw) it
// uses only when called. Every word comes from the catalogue; values go in as text.
"use strict";

const report = {
  form: { period: "this_month", from: "", to: "", by: "" },
  data: null, // the last /api/reports answer
  loading: false,
  error: "",
};

function reportQuery() {
  const f = report.form;
  const q = new URLSearchParams();
  if (f.period === "range") { q.set("from", f.from); q.set("to", f.to); } else q.set("period", f.period);
  if (f.by) q.set("by", f.by);
  return q.toString();
}

async function loadReport() {
  report.loading = true;
  report.error = "";
  if (document.activeElement) document.activeElement.blur(); // redraw skips a focused field
  redraw();
  try {
    report.data = await api("GET", "/api/reports?" + reportQuery());
  } catch (e) {
    report.data = null;
    report.error = t("reports.bad_period", { reason: e.message });
  }
  report.loading = false;
  redraw();
}

function span(seconds) {
  if (seconds < 59.95) return t("ago.s", { n: Math.round(seconds * 10) / 10 }); // 0.4 s, 12 s
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h === 0) return t("ago.min", { n: m });
  return m ? t("ago.h", { n: h }) + " " + t("ago.min", { n: m }) : t("ago.h", { n: h });
}

function pct(v) { return v === null || v === undefined ? "–" : v.toFixed(3) + " %"; }

// each figure: its cell's name (data-figure) and its heading in the catalogue
const FIGURES = [["uptime", "uptime"], ["outages", "outages"], ["longest", "longest"],
  ["downtime", "downtime"], ["gateway", "gateway_down"], ["complete", "complete"]];

// the six figures of a device or group; a device whose state is never known is not counted
function figureCells(f) {
  const counted = f.counted_s > 0;
  const text = {
    uptime: counted ? pct(f.uptime_pct) : t("reports.not_counted"),
    outages: counted ? String(f.outages) : "–",
    longest: counted ? span(f.longest_outage_s) : "–",
    downtime: counted ? span(f.downtime_s) : "–",
    gateway: counted ? span(f.gateway_downtime_s) : "–",
    complete: pct(f.completeness_pct),
  };
  return FIGURES.map(([name, key]) => el("td", { "data-figure": name, "data-label": t("reports." + key) }, text[name]));
}

function head(...keys) {
  return el("thead", {}, el("tr", {}, keys.map((k) => el("th", {}, t("reports." + k)))));
}

function availabilityPeriod(p) {
  const devices = el("table", { class: "report devices" },
    head("device", "kind", "supplier", ...FIGURES.map(([, k]) => k)),
    el("tbody", {}, p.devices.map((d) => el("tr", { "data-device": d.device, class: d.outages ? "had-outage" : "" },
      el("th", { scope: "row" }, d.device),
      el("td", { "data-label": t("reports.kind") }, d.kind || "–"),
      el("td", { "data-label": t("reports.supplier") }, d.supplier || t("reports.no_supplier")),
      figureCells(d)))));
  const groups = [
    ...p.by_kind.map((g) => [t("reports.by_kind", { name: g.kind || "–" }), "kind:" + (g.kind || ""), g]),
    ...p.by_supplier.map((g) => [g.supplier ? t("reports.by_supplier", { name: g.supplier }) : t("reports.no_supplier"), "supplier:" + (g.supplier || ""), g]),
    [t("reports.all"), "all", p.all],
  ];
  const grouped = el("table", { class: "report groups" },
    head("group", "devices", ...FIGURES.map(([, k]) => k)),
    el("tbody", {}, groups.map(([label, key, g]) => el("tr", { "data-group": key, class: key === "all" ? "all" : "" },
      el("th", { scope: "row" }, label),
      el("td", { "data-label": t("reports.devices") }, String(g.devices)),
      figureCells(g)))));
  return el("section", { class: "period", "data-period": p.period },
    report.data.by ? el("h4", {}, p.period) : null, // one period: the range above names it
    scroll(grouped), scroll(devices));
}

// a table wider than the page scrolls by itself (on a phone each row is a card instead)
function scroll(table) { return el("div", { class: "scroll" }, table); }

function responseTable(r) {
  const rows = ["all", "critical", "warning", "info"].filter((s) => s === "all" || r[s].alarms > 0).map((s) => {
    const f = r[s];
    const share = f.within_target_share === null ? "–" : (f.within_target_share * 100).toFixed(1) + " %";
    const opt = (v) => (v === null ? "–" : span(v));
    const cell = (name, key, text) => el("td", { "data-figure": name, "data-label": t("reports." + key) }, text);
    return el("tr", { "data-severity": s },
      el("th", { scope: "row" }, s === "all" ? t("reports.all_severities") : severity(s)),
      cell("alarms", "alarms", String(f.alarms)),
      cell("acknowledged", "acked", String(f.acknowledged)),
      cell("within", "within", f.within_target + " (" + share + ")"),
      cell("target", "target", opt(f.target_s)),
      cell("median", "median", opt(f.time_to_ack_p50_s)),
      cell("p90", "p90", opt(f.time_to_ack_p90_s)),
      cell("worst", "worst", opt(f.time_to_ack_max_s)),
      cell("exhausted", "exhausted", String(f.escalation_exhausted)));
  });
  const late = r.late.map((a) => el("tr", { "data-alarm": a.id },
    el("th", { scope: "row" }, a.device, " ", el("small", {}, a.id)),
    el("td", { "data-label": t("reports.severity") }, severity(a.severity)),
    el("td", { "data-label": t("reports.raised") }, localTime(a.raised_at)),
    el("td", { "data-label": t("reports.took") }, a.time_to_ack_s === null ? t("reports.never") : span(a.time_to_ack_s)),
    el("td", { "data-label": t("reports.acked_by") }, a.acked_by || "–")));
  return [
    scroll(el("table", { class: "report response" },
      head("severity", "alarms", "acked", "within", "target", "median", "p90", "worst", "exhausted"),
      el("tbody", {}, rows))),
    el("h4", {}, t("reports.late", { n: r.late_total })),
    late.length ? scroll(el("table", { class: "report late" },
      head("alarm", "severity", "raised", "took", "acked_by"), el("tbody", {}, late))) : el("p", { class: "none" }, t("reports.late_none")),
    r.late_total > late.length ? el("p", {}, t("reports.late_more", { shown: late.length, total: r.late_total })) : null,
  ];
}

function localTime(iso) {
  // the community's wall time, as the CLI prints it
  const zone = report.data.timezone;
  try {
    return new Date(iso).toLocaleString("sv-SE", { timeZone: zone }).slice(0, 16);
  } catch (e) { return iso.replace("T", " ").slice(0, 16); }
}

function reportForm() {
  const f = report.form;
  const set = (key) => (e) => {
    f[key] = e.target.value;
    if (key !== "period") return;
    if (f.period === "range" && !f.from && report.data) { f.from = report.data.from; f.to = report.data.to; }
    redraw(); // the date fields come or go
  };
  const option = (value, key, chosen) => el("option", { value, selected: chosen === value }, t("reports." + key));
  return el("form", { class: "report-form", onsubmit: (e) => { e.preventDefault(); loadReport(); } },
    el("label", {}, t("reports.period"), el("select", { id: "report-period", onchange: set("period") },
      option("this_month", "this_month", f.period), option("last_month", "last_month", f.period), option("range", "range", f.period))),
    f.period === "range" ? [
      el("label", {}, t("reports.from"), el("input", { id: "report-from", type: "date", value: f.from, required: true, onchange: set("from") })),
      el("label", {}, t("reports.to"), el("input", { id: "report-to", type: "date", value: f.to, required: true, onchange: set("to") })),
    ] : null,
    el("label", {}, t("reports.by"), el("select", { id: "report-by", onchange: set("by") },
      option("", "by_none", f.by), option("day", "by_day", f.by), option("month", "by_month", f.by))),
    el("button", { id: "report-show", type: "submit" }, t("reports.show")));
}

function drawReports() {
  const d = report.data;
  const body = [];
  if (report.loading) body.push(el("p", { id: "report-loading" }, t("reports.loading")));
  if (report.error) body.push(el("p", { class: "error", id: "report-error", role: "alert" }, report.error));
  if (d && !report.loading) {
    const csv = "/api/reports/availability.csv?" + new URLSearchParams(Object.assign({ from: d.from, to: d.to }, d.by ? { by: d.by } : {}));
    const restarts = d.availability.restarts;
    body.push(
      el("p", { class: "report-range" }, el("b", { id: "report-range" }, t("reports.range_title", { first: d.from, last: d.to, zone: d.timezone })),
        " ", el("a", { id: "report-csv", class: "button", href: csv, download: "" }, t("reports.csv"))),
      el("h3", {}, t("reports.availability")),
      el("div", { id: "report-availability" }, d.availability.periods.map(availabilityPeriod)),
      restarts.length ? el("div", { class: "restarts" }, el("p", {}, t("reports.restarts")),
        el("ul", {}, restarts.map((r) => el("li", {}, t("reports.restart", { first: localTime(r.from), last: localTime(r.to), duration: span(r.seconds) }),
          ", ", r.clean ? t("reports.clean") : t("reports.unclean"))))) : null,
      el("h3", {}, t("reports.response")),
      el("div", { id: "report-response" }, responseTable(d.response)));
  }
  return el("section", { id: "reports" }, el("h2", {}, t("reports.title")), reportForm(), body);
}
