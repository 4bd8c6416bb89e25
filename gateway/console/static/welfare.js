// The console's Welfare view: the watched households, "someone checked" answers, planned
// absences and "back early". Loaded before console.js, whose helpers (el, t, api, me, redraw,
// route) it uses only when called; durations as reports.js writes them (span). Every word
// comes from the catalogue; values go in as text. Times are the site's local time.
"use strict";

const welfare = {
  data: null, // the last /api/welfare answer
  loading: false,
  error: "",
  notice: "", // what the last action did
  open: null, // {household, form: "answer" | "away"}: the form shown
  shown: null, // the household a link from Duty (#welfare/<id>) last scrolled to
  form: { note: "", fromDate: "", fromTime: "", untilDate: "", untilTime: "" },
};

async function loadWelfare() {
  if (!me.welfare || welfare.loading) return;
  welfare.loading = true;
  try {
    welfare.data = await api("GET", "/api/welfare");
    welfare.error = "";
  } catch (e) {
    welfare.error = t("error", { error: e.message });
  }
  welfare.loading = false;
  redraw("welfare");
  const r = route();
  const card = r.view === "welfare" && r.arg && r.arg !== welfare.shown ? $("household-" + r.arg) : null;
  if (card) { card.scrollIntoView(); welfare.shown = r.arg; }
}

// now in the site's zone, as the date and time fields want it: ["2026-12-20", "08:00"]
function siteNow() {
  const zone = welfare.data ? welfare.data.timezone : undefined;
  try {
    return new Date().toLocaleString("sv-SE", { timeZone: zone }).slice(0, 16).split(" ");
  } catch (e) { return new Date().toISOString().slice(0, 16).split("T"); }
}

function openForm(household, form) {
  const [date, time] = siteNow();
  welfare.open = { household, form };
  welfare.form = { note: "", fromDate: date, fromTime: time, untilDate: "", untilTime: time };
  welfare.notice = "";
  welfare.error = "";
  redraw("welfare");
}

async function welfareAct(path, body, said) {
  if (document.activeElement) document.activeElement.blur(); // redraw skips a focused field
  try {
    const done = await api("POST", path, body);
    welfare.data.households = done.households;
    welfare.notice = said;
    welfare.error = "";
    welfare.open = null;
  } catch (e) {
    welfare.error = t("error", { error: e.message });
  }
  redraw("welfare");
}

function answer(h) {
  const path = `/api/welfare/${encodeURIComponent(h)}/answer`;
  return welfareAct(path, { note: welfare.form.note }, t("welfare.answered", { household: h }));
}

function planAbsence(h) {
  const f = welfare.form;
  const body = { from: f.fromDate + "T" + (f.fromTime || "00:00"), until: f.untilDate + "T" + (f.untilTime || "00:00"), note: f.note };
  return welfareAct(`/api/welfare/${encodeURIComponent(h)}/absences`, body, t("welfare.entered", { household: h }));
}

function backEarly(h, id) {
  return welfareAct(`/api/welfare/absences/${encodeURIComponent(id)}/cancel`, {}, t("welfare.returned", { household: h }));
}

// an input bound to welfare.form[key], so a redraw keeps what was typed
function field(id, key, attrs) {
  return el("input", Object.assign({ id, value: welfare.form[key], oninput: (e) => { welfare.form[key] = e.target.value; } }, attrs));
}

function welfareForm(h) {
  const submit = (fn) => (e) => { e.preventDefault(); fn(h); };
  const close = el("button", { type: "button", class: "plain", onclick: () => { welfare.open = null; redraw("welfare"); } }, t("welfare.cancel"));
  if (welfare.open.form === "answer") {
    return el("form", { class: "welfare-form", id: "answer-form", onsubmit: submit(answer) },
      el("label", {}, t("welfare.checked_note"), field("answer-note", "note", { required: true, maxlength: 200 })),
      el("div", { class: "actions" }, el("button", { type: "submit", id: "answer-send", class: "go" }, t("welfare.checked_send")), close));
  }
  const when = (label, key) => el("fieldset", {}, el("legend", {}, t("welfare." + label)),
    field("away-" + label + "-date", key + "Date", { type: "date", required: true, "aria-label": t("welfare." + label) + " " + t("welfare.date") }),
    field("away-" + label + "-time", key + "Time", { type: "time", required: true, "aria-label": t("welfare." + label) + " " + t("welfare.time") }));
  return el("form", { class: "welfare-form", id: "away-form", onsubmit: submit(planAbsence) },
    when("from", "from"), when("until", "until"),
    el("label", {}, t("welfare.away_note"), field("away-note", "note", { required: true, maxlength: 200 })),
    el("div", { class: "actions" }, el("button", { type: "submit", id: "away-send", class: "go" }, t("welfare.away_send")), close));
}

function household(h, focus) {
  const last = h.last_sign;
  const absences = h.absences.filter((a) => a.status !== "ended"); // ended ones are history
  const opened = welfare.open && welfare.open.household === h.household;
  return el("article", { class: "household " + h.state + (focus === h.household ? " focus" : ""), id: "household-" + h.household, "data-state": h.state },
    el("h3", {}, h.household, h.flat ? el("small", {}, " ", h.flat) : null, " ", el("span", { class: "wstate " + h.state }, t("welfare.state." + h.state))),
    el("p", { class: "meta" }, t("welfare.quiet", { quiet: span(h.quiet_s), limit: span(h.limit_s) })),
    el("p", { class: "meta last-sign" }, last ? t("welfare.last_sign", { kind: t("welfare.kind." + last.kind), source: last.source, at: last.local }) : t("welfare.no_sign")),
    h.offline.length ? el("p", { class: "warn" }, t("welfare.offline", { sources: h.offline.join(", ") })) : null,
    absences.length ? el("ul", { class: "absences" }, absences.map((a) => el("li", { class: a.status, "data-absence": a.id },
      el("div", {}, el("b", {}, t("welfare.absence", { first: a.from_local, last: a.until_local })), " · ", t("welfare.status." + a.status), el("br"),
        el("small", {}, t("welfare.entered_by", { by: a.by, note: a.note }))),
      el("button", { class: "back", "data-absence": a.id, onclick: () => backEarly(h.household, a.id) }, t("welfare.back"))))) : null,
    opened ? welfareForm(h.household) : el("div", { class: "actions" },
      el("button", { class: "checked" + (h.state === "quiet" ? " urgent" : ""), onclick: () => openForm(h.household, "answer") }, t("welfare.checked")),
      el("button", { class: "away", onclick: () => openForm(h.household, "away") }, t("welfare.away"))));
}

function drawWelfare(focus) {
  const body = [];
  const d = welfare.data;
  if (!me.welfare) body.push(el("p", { id: "welfare-off" }, t("welfare.not_configured")));
  else if (!d && !welfare.error) body.push(el("p", {}, t("welfare.loading")));
  if (welfare.notice) body.push(el("p", { class: "ok", id: "welfare-notice", role: "status" }, welfare.notice));
  if (welfare.error) body.push(el("p", { class: "error", id: "welfare-error", role: "alert" }, welfare.error));
  if (me.welfare && d) {
    body.push(el("p", { class: "meta" }, t("welfare.intro"), " ", t("welfare.zone", { zone: d.timezone })));
    const order = { quiet: 0, paused: 1, watched: 2, absent: 3 }; // who needs a visit first
    const list = [...d.households].sort((a, b) => order[a.state] - order[b.state] || a.household.localeCompare(b.household));
    body.push(list.length ? el("div", { class: "households" }, list.map((h) => household(h, focus))) : el("p", {}, t("welfare.none")));
  }
  return el("section", { id: "welfare" }, el("h2", {}, t("welfare.title")), body);
}

setInterval(() => { if (me && route().view === "welfare") loadWelfare(); }, 10000); // the quiet counts on
