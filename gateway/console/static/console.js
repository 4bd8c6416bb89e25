// The field console's page: draws every view from /api/* JSON and the /api/events stream.
// No framework, no build step, nothing loaded from elsewhere. Every word comes from the
// catalogue (/api/me "phrases"); every value goes into the page as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const WATCHDOG_MS = 15000; // no event (pings come every 10 s) for this long: the link is lost
let me = null;
let T = {};
const state = {
  devices: new Map(),
  duty: null,
  status: null,
  known: new Set(), // alarm ids seen unacknowledged, so a new one is noticed
  receivedAt: 0, // when the duty view arrived (ages tick from there)
  lastEvent: 0,
  source: null,
  pressed: new Map(), // device -> time the installer was asked to press its button
  tested: new Set(),
  reads: new Map(), // device -> last "read now" result
  scans: new Map(), // bus -> last scan result
};

function t(key, values) {
  let s = T[key] !== undefined ? T[key] : key;
  for (const [k, v] of Object.entries(values || {})) s = s.split("{" + k + "}").join(String(v));
  return s;
}

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}

function ago(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t("ago.s", { n: s });
  if (s < 3600) return t("ago.min", { n: Math.floor(s / 60) });
  if (s < 86400) return t("ago.h", { n: Math.floor(s / 3600) });
  return t("ago.d", { n: Math.floor(s / 86400) });
}

function bytes(n) {
  if (n >= 1048576) return (n / 1048576).toFixed(1) + " MiB";
  if (n >= 1024) return (n / 1024).toFixed(0) + " KiB";
  return n + " B";
}

async function api(method, path, body) {
  const headers = { "X-CSRF-Token": me ? me.csrf : "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

// -- alarm sound and flash --------------------------------------------------------------------

let audio = null;
let beeping = null;

function soundReady() { return audio !== null && audio.state === "running"; }

function enableSound() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    audio.resume();
  } catch (e) { audio = null; }
  drawSoundButton();
}

function drawSoundButton() {
  const b = $("sound");
  b.hidden = false;
  b.textContent = soundReady() ? t("sound.on") : t("sound.enable");
  b.classList.toggle("on", soundReady());
}

function beep() {
  if (!soundReady()) return;
  [880, 660].forEach((f, i) => {
    const o = audio.createOscillator();
    const g = audio.createGain();
    o.frequency.value = f;
    g.gain.value = 0.3;
    o.connect(g).connect(audio.destination);
    const at = audio.currentTime + i * 0.35;
    o.start(at);
    o.stop(at + 0.3);
  });
}

function alarming(unacked) {
  document.body.classList.toggle("alarming", unacked > 0);
  if (unacked > 0 && beeping === null) { beep(); beeping = setInterval(beep, 2000); }
  if (unacked === 0 && beeping !== null) { clearInterval(beeping); beeping = null; }
}

// -- the live link ----------------------------------------------------------------------------

function linkLost() {
  const b = $("link");
  b.hidden = false;
  b.className = "link lost";
  b.textContent = t("link.lost");
  document.body.classList.add("offline");
}

function linkOk() {
  const b = $("link");
  b.hidden = true;
  document.body.classList.remove("offline");
}

function connect() {
  if (state.source) state.source.close();
  const source = new EventSource("/api/events");
  state.source = source;
  const seen = () => { state.lastEvent = Date.now(); linkOk(); };
  source.addEventListener("ping", seen);
  source.addEventListener("devices", (e) => { seen(); onDevices(JSON.parse(e.data)); });
  source.addEventListener("alarms", (e) => { seen(); onDuty(JSON.parse(e.data)); });
  source.addEventListener("status", (e) => { seen(); state.status = JSON.parse(e.data); redraw("status"); });
  source.onerror = () => {
    linkLost();
    api("GET", "/api/me").catch(() => {}); // a session that ended goes to the sign-in form
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  };
}

setInterval(() => {
  if (state.lastEvent && Date.now() - state.lastEvent > WATCHDOG_MS) {
    linkLost();
    state.lastEvent = Date.now(); // one reconnect per watchdog period
    connect();
  }
}, 1000);

function onDevices(data) {
  if (data.all) state.devices = new Map();
  for (const d of data.devices) state.devices.set(d.id, Object.assign(d, { at: Date.now() }));
  for (const id of data.gone || []) state.devices.delete(id);
  redraw("devices");
}

function onDuty(duty) {
  state.duty = duty;
  state.receivedAt = Date.now();
  let fresh = false;
  const unacked = duty.alarms.filter((a) => !a.acked_at);
  for (const a of unacked) {
    // a press the installer asked for on the checklist is no reason to leave the checklist
    if (!state.known.has(a.id)) { state.known.add(a.id); fresh = fresh || !state.pressed.has(a.device); }
  }
  for (const a of duty.alarms) {
    const asked = state.pressed.get(a.device);
    if (asked && Date.parse(a.raised_at) >= asked - 2000) state.tested.add(a.device);
  }
  alarming(unacked.length);
  if (unacked.length === 0) document.body.classList.remove("new-alarm");
  if (fresh && !state.firstDuty) {
    if (route().view !== "duty") location.hash = "#duty";
    document.body.classList.add("new-alarm");
    setTimeout(() => document.body.classList.remove("new-alarm"), 10000);
  }
  state.firstDuty = false;
  redraw("duty");
  if (route().view === "welfare") loadWelfare(); // a welfare check opened or closed
}
state.firstDuty = true;

// -- views ------------------------------------------------------------------------------------

function route() {
  const [view, arg] = location.hash.replace(/^#/, "").split("/");
  const areas = me ? me.areas : [];
  if (view === "alarm") return { view: "duty", arg: decodeURIComponent(arg || "") };
  if (view === "device" && areas.includes("devices")) return { view: "device", arg: decodeURIComponent(arg || "") };
  if (view === "welfare" && areas.includes(view)) return { view, arg: decodeURIComponent(arg || "") };
  if (areas.includes(view)) return { view, arg: null };
  return { view: "duty", arg: null };
}

function redraw(what) {
  const r = route();
  const wants = { duty: ["duty"], devices: ["devices"], device: ["devices"], commission: ["devices", "duty"], status: ["status", "duty"], welfare: ["welfare"] };
  if (what && !(wants[r.view] || []).includes(what)) return;
  const view = $("view");
  const active = document.activeElement;
  if (active && view.contains(active) && active.tagName === "INPUT") return; // typing: do not redraw
  view.replaceChildren(draw[r.view](r.arg));
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("here", a.dataset.view === r.view || (r.view === "device" && a.dataset.view === "devices"));
  }
}

function severity(s) { return el("span", { class: "sev " + s }, t("severity." + s)); }

const draw = { reports: drawReports, welfare: drawWelfare }; // reports.js, welfare.js

draw.duty = (focus) => {
  const duty = state.duty;
  if (!duty) return el("p", {}, "…");
  const elapsed = (Date.now() - state.receivedAt) / 1000;
  const cards = duty.alarms.map((a) => {
    const acked = a.acked_at !== null;
    const buttons = [];
    if (!acked) buttons.push(el("button", { class: "ack", "data-alarm": a.id, onclick: () => act(a.id, "ack") }, t("duty.ack")));
    if (a.latched) buttons.push(el("button", { class: "reset", "data-alarm": a.id, onclick: () => act(a.id, "reset") }, t("duty.reset")));
    if (a.kind === "welfare_check" && me.welfare && me.areas.includes("welfare")) buttons.push(el("a", { class: "button", href: "#welfare/" + encodeURIComponent(a.device) }, t("welfare.answer_link")));
    return el("article", { class: "alarm " + a.severity + (acked ? " acked" : " unacked") + (focus === a.id ? " focus" : ""), id: "alarm-" + a.id },
      el("h3", {}, severity(a.severity), " ", (a.what && a.what[me.language]) || a.message),
      el("p", { class: "meta" }, a.device, " · ", t("duty.raised", { ago: ago(a.age_s + elapsed) }), " · ", t("duty.step", { step: a.escalation_step })),
      el("p", { class: "who" }, acked ? t("duty.acked_by", { by: a.acked_by, after: ago(a.time_to_ack_s) }) : t("duty.unacked")),
      el("div", { class: "actions" }, buttons));
  });
  const today = duty.today || {};
  const share = today.within_target_share === null || today.within_target_share === undefined ? "–" : Math.round(today.within_target_share * 100) + " %";
  return el("section", { id: "duty" },
    el("p", { class: "siren " + (duty.siren ? "on" : "off") }, t("duty.siren"), ": ", duty.siren ? t("duty.siren_on") : t("duty.siren_off")),
    el("h2", {}, t("duty.open"), " (", duty.alarms.length, ")"),
    cards.length ? el("div", { class: "alarms" }, cards) : el("p", { class: "none" }, t("duty.none")),
    el("h2", {}, t("duty.today")),
    el("p", { id: "today" }, t("duty.today_figures", {
      alarms: today.alarms || 0, acked: today.acknowledged || 0, within: today.within_target || 0,
      target: Math.round(duty.target_s / 60), share })),
    today.time_to_ack_p50_s !== null && today.time_to_ack_p50_s !== undefined ? el("p", {}, t("duty.median", { median: ago(today.time_to_ack_p50_s) })) : null);
};

async function act(id, action) {
  try { onDuty(await api("POST", `/api/alarms/${encodeURIComponent(id)}/${action}`)); } catch (e) {
    alert(e.message.includes("active") ? t("duty.still_active") : t("error", { error: e.message }));
  }
}

function pointChips(d) {
  return d.points.map((p) => el("span", {
    class: "point q-" + p.quality + (p.implausible ? " implausible" : ""), title: t("quality." + p.quality),
  }, p.name, " ", el("b", {}, p.value === null ? "–" : String(p.value)), " ", p.unit, p.implausible ? " ⚠ " + t("devices.implausible") : ""));
}

function onlineText(d) {
  if (d.online === null) return t("devices.unknown");
  const since = d.since_s === null ? "" : " · " + t("devices.since", { ago: ago(d.since_s + (Date.now() - d.at) / 1000) });
  return (d.online ? t("devices.online") : t("devices.offline")) + since;
}

draw.devices = () => {
  const groups = new Map();
  for (const d of [...state.devices.values()].sort((a, b) => a.id.localeCompare(b.id))) {
    const key = d.bus || "";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(d);
  }
  const sections = [...groups.entries()].sort().map(([bus, list]) => el("section", { class: "bus" },
    el("h3", {}, bus ? t("devices.bus", { bus }) : t("devices.no_bus")),
    el("table", { class: "devices" }, el("tbody", {}, list.map((d) => el("tr", {
      id: "device-" + d.id, class: (d.online === false ? "offline" : "") + (d.points.some((p) => p.implausible) ? " implausible" : ""),
    },
      el("td", {}, el("a", { href: "#device/" + encodeURIComponent(d.id) }, d.id), el("br"), el("small", {}, d.kind)),
      el("td", { class: "state" }, onlineText(d)),
      el("td", {}, pointChips(d), Object.entries(d.disabled).map(([p, why]) => el("span", { class: "point disabled" }, p, ": ", t("devices.disabled", { reason: why }))))))))));
  return el("section", { id: "devices" }, el("h2", {}, t("devices.title")), sections);
};

draw.device = (id) => {
  const d = state.devices.get(id);
  if (!d) return el("p", {}, id, ": ?");
  const read = state.reads.get(id);
  const history = state.history && state.history.id === id ? state.history.list : [];
  return el("section", { id: "device" },
    el("h2", {}, d.id, " ", el("small", {}, d.kind, d.bus ? " · " + d.bus : "")),
    el("p", { class: d.online === false ? "bad" : "" }, onlineText(d), d.online === false && d.reason ? " – " + d.reason : ""),
    el("table", { class: "points" },
      el("thead", {}, el("tr", {}, el("th", {}, t("devices.point")), el("th", {}, t("devices.value")), el("th", {}, t("devices.quality")), el("th", {}, t("devices.age")))),
      el("tbody", {}, d.points.map((p) => el("tr", { class: "q-" + p.quality + (p.implausible ? " implausible" : "") },
        el("td", {}, p.name), el("td", {}, p.value === null ? "–" : String(p.value), " ", p.unit),
        el("td", {}, t("quality." + p.quality)), el("td", {}, ago(p.age_s + (Date.now() - d.at) / 1000)))))),
    Object.entries(d.disabled).map(([p, why]) => el("p", { class: "warn" }, p, ": ", t("devices.disabled", { reason: why }))),
    el("p", {}, t("devices.polls", { polls: d.counters.polls || 0, failed: d.counters.poll_failures || 0 })),
    d.last_error ? el("p", { class: "warn" }, t("devices.last_error", { error: d.last_error })) : null,
    me.commission && d.bus ? el("button", { id: "read-now", onclick: () => readNow(id) }, t("devices.read_now")) : null,
    read ? el("pre", { id: "read-result" }, JSON.stringify(read, null, 1)) : null,
    el("h3", {}, t("devices.history")),
    el("ul", { class: "history" }, history.map((h) => el("li", {}, h.ts.replace("T", " ").slice(0, 19), " ", h.online ? t("devices.online") : t("devices.offline")))));
};

async function readNow(id) {
  state.reads.set(id, t("devices.reading"));
  redraw();
  try { state.reads.set(id, await api("POST", `/api/devices/${encodeURIComponent(id)}/read`, { raw: true })); } catch (e) {
    state.reads.set(id, t("error", { error: e.message }));
  }
  redraw();
}

async function loadHistory(id) {
  try { state.history = { id, list: (await api("GET", `/api/devices/${encodeURIComponent(id)}`)).history }; redraw(); } catch (e) { /* shown as empty */ }
}

draw.commission = () => {
  const buses = me.buses.map((bus) => {
    const result = state.scans.get(bus);
    const input = el("input", { id: "units-" + bus, value: "1-16", size: 8 });
    return el("section", { class: "scan" },
      el("h3", {}, t("commission.scan"), ": ", bus),
      el("label", {}, t("commission.units"), " ", input),
      el("button", { id: "scan-" + bus, onclick: () => scan(bus, input.value) }, t("commission.start")),
      typeof result === "string" ? el("p", {}, result) : null,
      result && result.found ? el("div", { id: "scan-result-" + bus },
        el("p", {}, t("commission.found", { n: result.found.length }), " (", result.seconds, " s)"),
        el("ul", {}, result.found.map((u) => el("li", { class: "unit", "data-unit": u.unit }, t("commission.unit", { unit: u.unit }), " – ",
          u.profile ? t("commission.guess", { profile: u.profile }) : t("commission.unknown"))))) : null);
  });
  const checks = [...state.devices.values()].sort((a, b) => a.id.localeCompare(b.id)).map((d) => {
    const button = ["gpio", "mqtt_button", "door_terminal"].includes(d.kind);
    const plausible = d.points.length > 0 && !d.points.some((p) => p.implausible) && Object.keys(d.disabled).length === 0;
    const tick = (ok) => el("span", { class: ok ? "tick ok" : "tick" }, ok ? "✔" : "✘");
    return el("tr", { id: "check-" + d.id },
      el("td", {}, d.id),
      el("td", {}, tick(d.online === true), " ", t("commission.answers")),
      el("td", {}, button ? "" : [tick(plausible), " ", t("commission.plausible")]),
      el("td", {}, button ? (state.tested.has(d.id) ? [tick(true), " ", t("commission.tested")]
        : state.pressed.has(d.id) ? t("commission.waiting", { device: d.id })
        : el("button", { class: "press", onclick: () => { state.pressed.set(d.id, Date.now()); redraw(); } }, t("commission.press"))) : ""));
  });
  return el("section", { id: "commission" },
    me.commission ? buses : el("p", {}, t("commission.unavailable")),
    el("h2", {}, t("commission.checklist")),
    el("table", { class: "checklist" }, el("tbody", {}, checks)));
};

async function scan(bus, units) {
  state.scans.set(bus, t("commission.scanning"));
  redraw();
  try { state.scans.set(bus, await api("POST", `/api/buses/${encodeURIComponent(bus)}/scan`, { units })); } catch (e) {
    state.scans.set(bus, t("error", { error: e.message }));
  }
  redraw();
}

draw.status = () => {
  const s = state.status;
  if (!s) return el("p", {}, "…");
  const row = (label, ...value) => el("tr", {}, el("th", {}, label), el("td", {}, value));
  return el("section", { id: "status" }, el("h2", {}, t("status.title")), el("table", { class: "status" }, el("tbody", {},
    row(t("status.health"), el("span", { class: s.ok ? "ok" : "bad" }, s.health), s.failing.length ? " – " + s.failing.join(", ") : ""),
    row(t("status.uplink"), el("span", { class: s.uplink.connected ? "ok" : "bad" }, s.uplink.connected ? t("status.connected") : t("status.disconnected")), s.uplink.last_error ? " – " + s.uplink.last_error : ""),
    row(t("status.backlog"), Object.entries(s.store.backlog).map(([k, v]) => k + ": " + v).join(", ")),
    row(t("status.store"), t("status.store_used", { used: bytes(s.store.used_bytes), quota: bytes(s.store.quota_bytes) }), s.store.problem ? el("span", { class: "bad" }, " – " + s.store.problem) : ""),
    row(t("status.clock"), el("span", { class: s.clock_synced ? "ok" : "bad" }, s.clock_synced ? t("status.clock_ok") : t("status.clock_bad"))),
    row(t("duty.siren"), s.siren ? t("duty.siren_on") : t("duty.siren_off")),
    Object.entries(s.channels).map(([name, c]) => row(t("status.channels") + ": " + name,
      c.down ? el("span", { class: "bad" }, t("status.channel_down", { error: c.last_error })) : "",
      c.last_ok_s === null ? t("status.never") : t("status.last_ok", { ago: ago(c.last_ok_s) }))))));
};

// -- start ------------------------------------------------------------------------------------

async function start() {
  me = await api("GET", "/api/me");
  T = me.phrases;
  document.documentElement.lang = me.language;
  document.title = t("title", { site: me.site });
  $("site").textContent = t("title", { site: me.site });
  $("who").textContent = t("signed_in", { name: me.display, role: t("role." + me.role) });
  $("signout").textContent = t("signout");
  $("nav").replaceChildren(...["duty", "welfare", "devices", "commission", "reports", "status"].filter((a) => me.areas.includes(a) && (a !== "welfare" || me.welfare))
    .map((a) => el("a", { href: "#" + a, "data-view": a, id: "nav-" + a }, t("nav." + a))));
  $("logout").addEventListener("submit", async (e) => {
    e.preventDefault();
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": me.csrf }, credentials: "same-origin" });
    location.href = "/login";
  });
  $("lang").textContent = t("lang.switch");
  $("lang").addEventListener("click", () => {
    const other = me.language === "en" ? "zh-CN" : "en"; // a preference, read by the server
    document.cookie = `cgw_lang=${other}; path=/; max-age=31536000; SameSite=Strict`;
    location.reload();
  });
  $("sound").addEventListener("click", enableSound);
  document.addEventListener("click", () => { if (audio === null) enableSound(); }, { once: true });
  drawSoundButton();
  const opened = (r) => {
    if (r.view === "device") loadHistory(r.arg);
    if (r.view === "reports" && !report.data && !report.loading) loadReport(); // this month
    if (r.view === "welfare") loadWelfare();
  };
  window.addEventListener("hashchange", () => { opened(route()); redraw(); });
  opened(route());
  redraw();
  connect();
  setInterval(() => redraw(route().view === "device" ? "devices" : route().view === "status" ? "status" : "duty"), 5000);
}

start().catch((e) => { linkLost(); console.error(e); });
