// The parent page: children's status, the map, live alerts over the websocket (sound, banner,
// notification), one-tap acknowledgement, alert history; reconnects by itself and catches up after.
"use strict";

const session = new Session("tracker-token");

// An enrolment link (/#enrol=CODE: the school or the city sends it for a guardian's first sign-in) is
// redeemed once, here, for the guardian's own token, which this browser keeps as it keeps a /#token=
// link's; nobody else ever holds it. Returns what went wrong, or null.
async function redeemEnrolment() {
  if (!location.hash.startsWith("#enrol=")) return null;
  const code = decodeURIComponent(location.hash.slice(7));
  history.replaceState(null, "", location.pathname);
  try {
    const r = await fetch("/api/v1/enrolment", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code }),
    });
    const data = await r.json().catch(() => null);
    if (r.ok && data && data.token) { session.set(data.token); return null; }
    return describeError(data, r.status, "enrol");
  } catch (e) { return t("err.network"); }
}
const state = {
  children: [], selected: null, alerts: new Map(), zones: null, routes: new Map(),
  socket: null, retry: 1000, timer: null, connectedOnce: false, soundOn: localStorage.getItem("tracker-sound") !== "off",
  bannerId: null, audio: null, beeps: 0, announced: new Set(),
  schoolZones: new Map(),  // school id -> its time zone (an alert's time is told on the school's clock)
};
let map = null, childLayer = null, zoneLayer = null, fitted = null;

// --- sound and notifications ---------------------------------------------------------------------
function unlockAudio() {
  if (!state.audio && (window.AudioContext || window.webkitAudioContext)) {
    state.audio = new (window.AudioContext || window.webkitAudioContext)();
  }
  if (state.audio && state.audio.state === "suspended") state.audio.resume();
}
document.addEventListener("pointerdown", unlockAudio, { once: false, passive: true });
document.addEventListener("keydown", unlockAudio, { once: false });

function beep(severity) {
  if (!state.soundOn) return;
  unlockAudio();
  const ctx = state.audio;
  if (!ctx) return;
  const tones = severity === "critical" ? [880, 660, 880, 660] : [740, 740];
  tones.forEach((f, i) => {
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.type = "square"; osc.frequency.value = f;
    const at = ctx.currentTime + i * 0.22;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.2);
    osc.connect(gain).connect(ctx.destination); osc.start(at); osc.stop(at + 0.21);
  });
  state.beeps += 1; document.body.dataset.beeps = String(state.beeps);
}

function notify(a, text) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  try { new Notification(`${t("kind." + a.kind)} — ${a.child.name}`, { body: text, tag: `alert-${a.id}`, requireInteraction: a.severity === "critical" }); } catch (e) { /* some browsers need a service worker */ }
}

function renderSoundButtons() {
  $("sound").textContent = t(state.soundOn ? "sound.on" : "sound.off");
  $("sound").setAttribute("aria-pressed", String(state.soundOn));
  $("notify").classList.toggle("hidden", !("Notification" in window) || Notification.permission !== "default");
}

// --- connection state ----------------------------------------------------------------------------
function setConn(kind) {
  const el = $("conn");
  el.className = "pill " + ({ "conn.live": "live", "conn.signedout": "out" }[kind] || "offline");
  el.textContent = t(kind); el.dataset.state = kind;
}

function toast(text) {
  const el = document.createElement("div");
  el.className = "toast"; el.setAttribute("role", "status"); el.textContent = text;
  document.body.appendChild(el); setTimeout(() => el.remove(), 4000);
}

// --- alerts --------------------------------------------------------------------------------------
function mergeRest(a) { state.alerts.set(a.id, { ...(state.alerts.get(a.id) || {}), ...a }); }

function mergeSocket(m) {
  const known = state.alerts.get(m.alert_id);
  state.alerts.set(m.alert_id, {
    ...(known || { steps: [], deliveries: [], acknowledged_at: null }),
    id: m.alert_id, kind: m.kind, severity: m.severity, state: m.state, child: m.child, zone: m.zone,
    opened_at: m.opened_at, resolved_at: m.resolved_at, text: m.text,
    position: m.position ? { ...m.position, ts: new Date(m.position.ts * 1000).toISOString() } : (known && known.position),
  });
  return !known;
}

// In the page's language: the websocket's `text` is in the guardian's chosen language, which the page
// may have been switched away from. Its time is on the child's school's clock, as the SMS tells it.
function alertText(a) {
  const child = a.child && state.children.find((c) => c.child_id === a.child.id);
  return alertSentence(a, child ? state.schoolZones.get(child.school_id) : undefined);
}

async function loadSchoolZones() {
  try {
    const page = await session.api("/api/v1/schools?limit=100");  // the guardian's children's schools
    for (const f of page.features) state.schoolZones.set(f.id, f.properties.timezone);
  } catch (e) { /* the browser's clock, then */ }
}

function needsAck(a) { return a.state === "open" && !a.acknowledged_at && a.severity !== "info"; }

function renderAlerts() {
  const list = [...state.alerts.values()].sort((a, b) => b.id - a.id).slice(0, 100);
  $("alerts").innerHTML = list.map((a) => `
    <article class="card alert ${esc(a.severity)} ${a.state === "resolved" ? "resolved" : ""} ${state.focused === a.id ? "focus" : ""}" data-alert="${a.id}" aria-labelledby="al-${a.id}">
      <div class="head">
        <strong id="al-${a.id}"><span class="sev ${esc(a.severity)}">${esc(t("sev." + a.severity))}</span> · ${esc(t("kind." + a.kind))} · ${esc(a.child && a.child.name)}</strong>
        <span>${esc(t("state." + a.state))}${a.acknowledged_at ? ` · ${esc(t("acked"))}` : ""}</span>
      </div>
      <div>${esc(alertText(a))}</div>
      <small>${esc(t("opened"))} ${esc(fmtTime(a.opened_at))}${a.zone ? ` · ${esc(a.zone.name)}` : ""}</small>
      ${needsAck(a) ? `<p><button type="button" data-ack="${a.id}">${esc(t("ack"))}</button></p>` : ""}
      ${(a.steps && a.steps.length) || (a.deliveries && a.deliveries.length) ? `
      <details><summary>${esc(t("steps"))}</summary>
        <ol class="steps">${(a.steps || []).map((s) => `<li>${esc(fmtTime(s.at))} — <strong>${esc(tOr("step." + s.step, s.step))}</strong> ${esc(stepDetail(s.detail))}</li>`).join("")}</ol>
        <ul class="steps">${(a.deliveries || []).map((d) => `<li>${esc(tOr("channel." + d.channel, d.channel))} · ${esc(tOr("transition." + d.transition, d.transition))} · ${esc(tOr("dstate." + d.state, d.state))} (${d.attempts})${d.sent_at ? " " + esc(fmtTime(d.sent_at)) : ""}${d.last_error && LANG === "en" ? " — " + esc(d.last_error) : ""}</li>`).join("")}</ul>
      </details>` : ""}
    </article>`).join("") || `<p class="card">${esc(t("alerts.none"))}</p>`;
}

// A step's detail in words: on which channel, to whom, which attempt or escalation level (the rest of
// it, the server's own bookkeeping, stays in the API's answer).
function stepDetail(detail) {
  const d = detail || {};
  return [
    d.channel ? tOr("channel." + d.channel, d.channel) : "",
    d.transition ? tOr("transition." + d.transition, d.transition) : "",
    d.guardian_id != null ? t("detail.guardian", { n: d.guardian_id }) : "",
    d.attempt > 1 ? t("detail.attempt", { n: d.attempt }) : "",
    d.level != null ? t("detail.level", { n: d.level }) : "",
  ].filter(Boolean).join(", ");
}

function showBanner(a) {
  state.bannerId = a.id;
  const b = $("banner");
  b.className = a.severity; b.classList.remove("hidden");
  $("banner-text").textContent = alertText(a);
  $("banner-ack").classList.toggle("hidden", !needsAck(a));
}
function hideBanner() { $("banner").classList.add("hidden"); state.bannerId = null; }

async function acknowledge(id) {
  const a = state.alerts.get(id);
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ type: "ack", alert_id: id }));
  } else {
    try { await session.api(`/api/v1/alerts/${id}/ack`, { method: "POST" }); await refreshAlert(id); } catch (e) { toast(t("error", { e: e.message })); }
  }
  if (a) { a.acknowledged_at = a.acknowledged_at || new Date().toISOString(); }
  if (state.bannerId === id) hideBanner();
  renderAlerts();
}

async function refreshAlert(id) {
  try { mergeRest(await session.api(`/api/v1/alerts/${id}`)); renderAlerts(); } catch (e) { /* shown on next load */ }
}

async function loadAlerts() {
  const page = await session.api("/api/v1/alerts?limit=100");
  page.items.forEach(mergeRest);
  renderAlerts();
  page.items.forEach((a) => announce(state.alerts.get(a.id)));
  return page.items.length;
}

// Banner, sound and notification, once per alert that waits for an acknowledgement (again when it
// escalates), whether it came over the websocket or was found when catching up.
function announce(a, again) {
  if (!a || !needsAck(a) || (state.announced.has(a.id) && !again)) return;
  state.announced.add(a.id);
  showBanner(a); beep(a.severity); notify(a, alertText(a));
}

// --- children and the map ------------------------------------------------------------------------
function renderChildren() {
  $("children").innerHTML = state.children.map((c) => `
    <div class="card child ${state.selected === c.child_id ? "selected" : ""}" data-child="${c.child_id}">
      <div>
        <strong>${esc(c.name)}</strong>
        <span class="badge st-${esc(c.status)}" data-status="${esc(c.status)}">${esc(t("status." + c.status))}</span><br>
        <small>${c.position ? `${esc(t("lastseen"))} ${esc(fmtTime(c.position.ts))}${c.position.batt != null ? ` · ${esc(t("battery"))} ${c.position.batt}%` : ""}` : esc(t("status.unknown"))}</small>
      </div>
      ${state.children.length > 1 ? `<button type="button" class="secondary" data-show="${c.child_id}" aria-pressed="${state.selected === c.child_id}">${esc(t("show"))}</button>` : ""}
    </div>`).join("") || `<p class="card">${esc(t("none"))}</p>`;
}

async function loadChildren() {
  const page = await session.api("/api/v1/live");
  state.children = page.items;
  if (state.selected === null && state.children.length) state.selected = state.children[0].child_id;
  renderChildren();
}


async function drawSelected() {
  const c = state.children.find((x) => x.child_id === state.selected);
  if (!c || !map) return;
  const layers = [];
  if (c.route_id && !state.routes.has(c.route_id)) {
    try { state.routes.set(c.route_id, await session.api(`/api/v1/routes/${c.route_id}`)); } catch (e) { state.routes.set(c.route_id, null); }
  }
  if (state.zones === null) {
    try { state.zones = (await session.api("/api/v1/zones?limit=1000")).features; } catch (e) { state.zones = []; }
  }
  const track = await session.api(`/api/v1/children/${c.child_id}/track?limit=5000`).catch(() => ({ features: [] }));
  if (childLayer) { if (childLayer.corridor) childLayer.corridor.off_zoom(); childLayer.remove(); }
  childLayer = L.featureGroup().addTo(map);
  const route = c.route_id ? state.routes.get(c.route_id) : null;
  if (route) {
    childLayer.corridor = corridorLayer(map, route, {});
    childLayer.corridor.bindTooltip(`${t("route")}: ${esc(route.properties.name)} (${route.properties.corridor_m} m)`);
    childLayer.addLayer(childLayer.corridor);
    layers.push(childLayer.corridor);
  }
  const pts = track.features.filter((f) => f.geometry).map((f) => [f.geometry.coordinates[1], f.geometry.coordinates[0]]);
  if (pts.length > 1) childLayer.addLayer(L.polyline(pts, { color: "#111827", weight: 2, opacity: 0.8 }));
  if (c.position) {
    const ll = [c.position.lat, c.position.lon];
    if (c.position.acc != null) {  // null: the phone stated no accuracy; no circle pretends to know it
      childLayer.addLayer(L.circle(ll, { radius: c.position.acc, color: STATUS_COLOUR[c.status], weight: 1, fillOpacity: 0.15, interactive: false }));
    }
    childLayer.addLayer(L.circleMarker(ll, { radius: 8, color: "#fff", weight: 2, fillColor: STATUS_COLOUR[c.status], fillOpacity: 1 })
      .bindTooltip(`${esc(c.name)} — ${esc(t("status." + c.status))} (${esc(fmtTime(c.position.ts))})`));
  }
  const focus = childLayer.getBounds().isValid() ? childLayer.getBounds() : null;
  if (zoneLayer) zoneLayer.remove();
  zoneLayer = L.featureGroup().addTo(map);
  for (const z of state.zones || []) {
    if (focus && !near(focus, z)) continue;
    const inside = c.zones.includes(z.id);
    L.geoJSON(z, { style: { ...ZONE_STYLE, fillOpacity: inside ? 0.5 : 0.25 } })
      .bindTooltip(`${esc(z.properties.name)} (${esc(zoneKind(z.properties.kind))})`).addTo(zoneLayer);
  }
  if (focus && fitted !== c.child_id) { state.fitBounds = focus.pad(0.2); map.fitBounds(state.fitBounds); fitted = c.child_id; }
}

async function refresh() {
  try { await loadChildren(); await drawSelected(); } catch (e) { if (e.status === 401) signOut(true); }
}

// --- the websocket: reconnect with back-off, catch up after ----------------------------------------
function connect() {
  if (!session.token) return;
  clearTimeout(state.timer);
  if (state.socket && state.socket.readyState <= WebSocket.OPEN) return;  // connecting or open already
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws?token=${encodeURIComponent(session.token)}`);
  state.socket = ws;
  setConn(state.connectedOnce ? "conn.offline" : "conn.connecting");
  // a handshake that hangs (a network that drops packets, a proxy) is given up after 15 s and tried
  // again: a socket left CONNECTING would stop every later attempt
  const opening = setTimeout(() => { if (ws.readyState === WebSocket.CONNECTING) ws.close(); }, 15000);
  ws.onopen = () => {
    clearTimeout(opening);
    setConn("conn.live");
    $("stale").classList.add("hidden");
    state.retry = 1000;
    if (state.connectedOnce) catchUp();
    state.connectedOnce = true;
  };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "alert") {
      mergeSocket(m);
      renderAlerts();
      announce(state.alerts.get(m.alert_id), m.transition === "escalated");
      if (state.bannerId === m.alert_id && m.state !== "open") hideBanner();
      refresh(); refreshAlert(m.alert_id);
    } else if (m.type === "ack") {
      if (!m.ok) toast(t("error", { e: `${t("ack")} #${m.alert_id}` }));
      refreshAlert(m.alert_id);  // the server's word on it, either way
    }
  };
  ws.onclose = async () => {
    clearTimeout(opening);
    if (state.socket !== ws) return;
    state.socket = null;
    // A refused handshake looks like any other drop to a page: ask the API whether the token still works.
    // (at most 10 s: on a lossy network the question may hang, and nothing would reconnect meanwhile)
    const r = await fetch("/api/v1/me", { headers: { Authorization: `Bearer ${session.token}` }, signal: AbortSignal.timeout(10000) }).catch(() => null);
    if (r && r.status === 401) { signOut(true); return; }
    // a newer socket made while the question was out (the network came back: "online") is the page's
    // connection now; saying "offline" after it opened left the pill wrong for good
    if (state.socket || !session.token) return;
    setConn(navigator.onLine === false ? "conn.nonetwork" : "conn.offline");
    const wait = state.retry * (0.75 + Math.random() * 0.5);
    state.retry = Math.min(state.retry * 2, 30000);
    state.timer = setTimeout(connect, wait);
  };
}

async function catchUp() {
  const before = JSON.stringify([...state.alerts.values()].map((a) => [a.id, a.state, a.acknowledged_at]));
  await loadAlerts().catch(() => 0);
  await refresh();
  const after = [...state.alerts.values()].map((a) => [a.id, a.state, a.acknowledged_at]);
  const old = new Set(JSON.parse(before).map((x) => JSON.stringify(x)));
  const changed = after.filter((x) => !old.has(JSON.stringify(x))).length;
  if (changed) toast(t("caughtup", { n: changed }));
}

window.addEventListener("online", () => {
  state.retry = 1000;
  // an attempt made while the network was gone may hang in CONNECTING: start afresh, now
  const ws = state.socket;
  if (ws && ws.readyState === WebSocket.CONNECTING) { state.socket = null; ws.close(); }
  connect();
});
window.addEventListener("offline", () => setConn("conn.nonetwork"));

// --- start ---------------------------------------------------------------------------------------
function signOut(refused) {
  if (state.socket) { const ws = state.socket; state.socket = null; ws.close(); }
  clearTimeout(state.timer);
  if (session.token) Push.forget(session.token);
  session.clear();
  $("app").classList.add("hidden"); $("signin").classList.remove("hidden");
  document.body.classList.add("signed-out");
  setConn("conn.signedout");
  $("conn").classList.toggle("hidden", !refused);  // say so only when a token was refused
}

async function start() {
  applyWords(); renderSoundButtons();
  if (!session.token) { signOut(false); return; }
  startApp();
  document.body.classList.remove("signed-out");
  $("conn").classList.remove("hidden");
  $("signin").classList.add("hidden"); $("app").classList.remove("hidden");
  if (!map) {
    map = makeMap($("map"));
    // the map's box much wider or narrower (a phone turned, the layout switched at 900 px): the child's
    // surroundings fitted again, else a fit made for a wide box leaves the child outside a narrow one
    map.on("resize", (e) => {
      if (state.fitBounds && Math.abs(e.newSize.x - e.oldSize.x) > 0.25 * e.oldSize.x) map.fitBounds(state.fitBounds, { animate: false });
    });
  }
  // the children's schools' clocks first: the alerts' sentences (and the banner) tell their time
  await Promise.all([loadSchoolZones(), loadChildren().catch(() => null)]);
  try { await loadAlerts(); } catch (e) { if (e.status === 401) { signOut(true); return; } }
  await refresh();
  connect();
  if (state.openAlert) { focusAlert(state.openAlert); state.openAlert = null; }
}

// --- the installed app: its worker, push notifications, the alert a notification opens -------------
// /#alert=ID: a notification was tapped (tracker/api/static/sw.js opens the page there)
if (location.hash.startsWith("#alert=")) {
  state.openAlert = Number(location.hash.slice(7)) || null;
  history.replaceState(null, "", location.pathname);
}

function startApp() {
  Push.register();
  TokenStore.set(session.token).catch(() => null);  // the worker's copy, for a notification's "Acknowledge"
  // permission given before: keep this browser subscribed, quietly (the prompt is only ever the button's)
  if (Push.supported && Notification.permission === "granted") {
    Push.subscribe(session).catch((e) => console.warn("push subscription:", e.message || e));
  }
}

async function turnOnNotifications() {
  if (!("Notification" in window)) return;
  const answer = await Notification.requestPermission();
  renderSoundButtons();
  if (answer !== "granted") return;
  if (!Push.supported) { toast(t("push.pageonly")); return; }
  try { await Push.subscribe(session); toast(t("push.on")); } catch (e) { toast(t("push.failed", { e: pushFailure(e) })); }
}

function focusAlert(id) {
  const a = state.alerts.get(id);
  if (!a) return;
  if (needsAck(a)) showBanner(a);
  state.focused = id; renderAlerts();
  const card = document.querySelector(`[data-alert="${id}"]`);
  if (card) card.scrollIntoView({ block: "center" });
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.addEventListener("message", (ev) => {
    const m = ev.data || {};
    if (m.type === "acked") { const a = state.alerts.get(m.alert_id); if (a) a.acknowledged_at = a.acknowledged_at || new Date().toISOString(); if (state.bannerId === m.alert_id) hideBanner(); refreshAlert(m.alert_id); }
    else if (m.type === "pushed" || m.type === "ack-failed") refreshAlert(m.alert_id);
    else if (m.type === "open-alert") focusAlert(m.alert_id);
    else if (m.type === "from-cache" && m.path === "/api/v1/live") {
      $("stale").textContent = t("offline.asof", { time: m.saved_at ? fmtTime(new Date(m.saved_at).toISOString()) : "?" });
      $("stale").classList.remove("hidden");
    }
  });
}

setupSignIn(session, "signin", start);
setupLanguageSwitch($("lang"), () => {
  renderSoundButtons(); renderChildren(); renderAlerts(); setConn($("conn").dataset.state || "conn.connecting");
  if (state.bannerId) showBanner(state.alerts.get(state.bannerId));  // the banner's sentence too
});
$("signout").addEventListener("click", () => signOut(false));
$("sound").addEventListener("click", () => { state.soundOn = !state.soundOn; localStorage.setItem("tracker-sound", state.soundOn ? "on" : "off"); unlockAudio(); renderSoundButtons(); });
$("notify").addEventListener("click", turnOnNotifications);
$("banner-ack").addEventListener("click", () => { if (state.bannerId) acknowledge(state.bannerId); });
$("banner-close").addEventListener("click", hideBanner);
$("alerts").addEventListener("click", (ev) => { const id = ev.target.dataset && ev.target.dataset.ack; if (id) acknowledge(Number(id)); });
$("children").addEventListener("click", (ev) => {
  const id = ev.target.dataset && ev.target.dataset.show;
  if (id) { state.selected = Number(id); fitted = null; renderChildren(); drawSelected(); }
});
setInterval(() => { if (session.token && !document.hidden) refresh(); }, 10000);
redeemEnrolment().then(async (problem) => {
  await start();
  if (problem) {  // shown on the sign-in form, where the guardian is left
    const help = $("signin").querySelector("small");
    help.textContent = problem; help.setAttribute("role", "alert");
  }
});
