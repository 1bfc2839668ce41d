// The school page: routes drawn, edited or uploaded (corridor, commute windows, arrivals); every child of
// the school live on one map; the day's alerts; children, tags and guardians.
"use strict";

const session = new Session("tracker-school-token");
const S = { me: null, schoolId: null, school: null, routes: [], selected: null, live: [], children: [], guardianNames: new Map(), drawing: null, edited: null, timer: null };
let map = null, routesLayer = null, kidsLayer = null, zonesLayer = null, schoolMarker = null;

function msg(id, text, error) { const el = $(id); el.textContent = text; el.className = error ? "error" : ""; }

// --- routes --------------------------------------------------------------------------------------
async function loadRoutes() {
  const fc = await session.api(`/api/v1/routes?school_id=${S.schoolId}&limit=1000`);
  S.routes = fc.features;
  const sel = $("route-select");
  sel.innerHTML = S.routes.map((r) => `<option value="${r.id}">${esc(r.properties.name)} (${r.properties.corridor_m} m)</option>`).join("")
    + `<option value="">${esc(t("new"))}…</option>`;
  if (S.selected !== null && !S.routes.some((r) => r.id === S.selected)) S.selected = null;
  if (S.selected === null && S.routes.length) S.selected = S.routes[0].id;
  sel.value = S.selected === null ? "" : String(S.selected);
  fillForm(); drawRoutes();
}

function fillForm() {
  const r = S.routes.find((x) => x.id === S.selected);
  $("r-name").value = r ? r.properties.name : "";
  $("r-corridor").value = r ? r.properties.corridor_m : 30;
  $("r-mode").value = r ? r.properties.mode || "walk" : "walk";
  showMeets();
  $("r-windows").value = r ? windowsText(r.properties.windows) : windowsText(S.school ? S.school.properties.windows : []);
  $("r-arrivals").value = r ? arrivalsText(r.properties.arrivals) : "";
  $("route-delete").disabled = !r; $("route-redraw").disabled = !r;
}

function drawRoutes() {
  if (routesLayer) { routesLayer.eachLayer((l) => l.off_zoom && l.off_zoom()); routesLayer.remove(); }
  routesLayer = L.featureGroup().addTo(map);
  for (const r of S.routes) {
    const chosen = r.id === S.selected;
    const layer = corridorLayer(map, r, chosen ? { band: "#2563eb", line: "#1e3a8a" } : { band: "#64748b", line: "#475569" });
    layer.bindTooltip(`${esc(r.properties.name)} · ${r.properties.corridor_m} m`);
    layer.on("click", () => { selectRoute(r.id); });
    routesLayer.addLayer(layer);
  }
  if (schoolMarker) schoolMarker.bringToFront();
}

function selectRoute(id) {
  stopDrawing(); msg("route-msg", "");
  S.selected = id; $("route-select").value = id === null ? "" : String(id);
  fillForm(); drawRoutes();
  const r = S.routes.find((x) => x.id === id);
  if (r) map.fitBounds(L.geoJSON(r).getBounds().pad(0.3));
}

function startDrawing() {
  stopDrawing();
  S.selected = null; $("route-select").value = ""; fillForm(); drawRoutes();
  S.drawing = true;
  map.pm.enableDraw("Line", { snappable: false, templineStyle: { color: "#1e3a8a" }, pathOptions: { color: "#1e3a8a", weight: 4 } });
  showDrawTools(true);
}

function startEditing() {
  const r = S.routes.find((x) => x.id === S.selected);
  if (!r) return;
  stopDrawing();
  const coords = r.geometry.type === "LineString" ? [r.geometry.coordinates] : r.geometry.coordinates;
  S.edited = L.polyline(coords.map((line) => line.map(([lon, lat]) => [lat, lon])), { color: "#1e3a8a", weight: 4 }).addTo(map);
  S.edited.pm.enable({ snappable: false });
  showDrawTools(true);
}

function showDrawTools(on) {
  $("draw-finish").classList.toggle("hidden", !on); $("draw-cancel").classList.toggle("hidden", !on);
  $("draw-hint").classList.toggle("hidden", !on);
}

function finishDrawing() {
  if (S.drawing && map.pm.Draw.Line._enabled) map.pm.Draw.Line._finishShape();
  if (S.edited && S.edited.pm.enabled()) S.edited.pm.disable();
  showDrawTools(false);
  $("r-name").focus();
}

function stopDrawing() {
  if (map && map.pm.globalDrawModeEnabled()) map.pm.disableDraw();
  if (S.edited) { S.edited.remove(); S.edited = null; }
  if (S.drawing && S.drawing !== true) S.drawing.remove();
  S.drawing = null; showDrawTools(false);
}

function pendingGeometry() {
  const layer = S.edited || (S.drawing && S.drawing !== true ? S.drawing : null);
  return layer ? layer.toGeoJSON().geometry : null;
}

async function saveRoute(ev) {
  ev.preventDefault();
  msg("route-msg", "");  // the last save's word does not stand for this one
  let props;
  try {
    props = {
      name: $("r-name").value.trim(), corridor_m: Number($("r-corridor").value), mode: $("r-mode").value,
      windows: parseWindows($("r-windows").value), arrivals: parseArrivals($("r-arrivals").value),
    };
  } catch (e) { msg("route-msg", t("error", { e: e.message }), true); return; }
  const geometry = pendingGeometry();
  try {
    let saved;
    if (S.selected === null) {
      if (!geometry) { msg("route-msg", t("route.drawhint"), true); return; }
      saved = await session.api("/api/v1/routes", { method: "POST", body: { type: "Feature", geometry, properties: { ...props, school_id: S.schoolId } } });
    } else {
      saved = await session.api(`/api/v1/routes/${S.selected}`, { method: "PATCH", body: { type: "Feature", ...(geometry ? { geometry } : {}), properties: props } });
    }
    stopDrawing();
    S.selected = saved.id;
    await loadRoutes(); await loadChildren();
    msg("route-msg", t("route.saved"));
  } catch (e) { msg("route-msg", t("error", { e: e.message }), true); }
}

async function deleteRoute() {
  const r = S.routes.find((x) => x.id === S.selected);
  if (!r || !confirm(`${t("delete")}: ${r.properties.name}?`)) return;
  try {
    await session.api(`/api/v1/routes/${r.id}`, { method: "DELETE" });
    S.selected = null; await loadRoutes(); msg("route-msg", t("route.deleted"));
  } catch (e) { msg("route-msg", t("error", { e: e.message }), true); }
}

async function upload(ev) {
  ev.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) return;
  const gpx = /\.gpx$/i.test(file.name);
  try {
    const res = await session.api(`/api/v1/import?school_id=${S.schoolId}`, {
      method: "POST", body: await file.text(), headers: { "Content-Type": gpx ? "application/gpx+xml" : "application/geo+json" },
    });
    msg("upload-msg", t("upload.done", { n: res.created.length, u: res.updated.length }));
    await loadRoutes();
  } catch (e) { msg("upload-msg", t("error", { e: e.message }), true); }
}

// --- the live map: pushed over /ws/school; polled only while that socket is down ------------------
// The socket sends a snapshot of the school's children, then each child's changes (at most one every
// few seconds, the latest position winning) and a word when an alert opens or resolves. While it is
// down the page polls GET /api/v1/live every 5 s, and tries the socket again with a growing wait.
const LIVE = { socket: null, up: false, retry: 0, reconnect: null, alerts: null, markers: new Map() };

function drawLive() {
  if (!kidsLayer) kidsLayer = L.featureGroup().addTo(map);
  const shown = new Set();
  for (const c of S.live) {
    if (!c.position) continue;
    shown.add(c.child_id);
    const at = [c.position.lat, c.position.lon];
    const tip = `${esc(c.name)} — ${esc(t("status." + c.status))} (${esc(fmtTime(c.position.ts))})`;
    const marker = LIVE.markers.get(c.child_id);
    if (marker) {
      marker.setLatLng(at); marker.setStyle({ fillColor: STATUS_COLOUR[c.status] }); marker.setTooltipContent(tip);
    } else {
      LIVE.markers.set(c.child_id, L.circleMarker(at, { radius: 7, color: "#fff", weight: 2, fillColor: STATUS_COLOUR[c.status], fillOpacity: 1, pmIgnore: true })
        .bindTooltip(tip).addTo(kidsLayer));
    }
  }
  for (const [id, marker] of LIVE.markers) if (!shown.has(id)) { marker.remove(); LIVE.markers.delete(id); }
  $("live-count").textContent = `· ${t("count.children", { n: shown.size })}`;
  renderChildren();
}

function showLink() {
  $("conn").className = LIVE.up ? "pill live" : "pill offline";
  $("conn").textContent = LIVE.up ? t("live.pushed") : `${t("live.polling")} · ${fmtNow()}`;
}

async function loadLive() {
  const page = await session.api(`/api/v1/live?school_id=${S.schoolId}&limit=1000`);
  S.live = page.items;
  drawLive(); showLink();
}

function applyChanges(changes) {
  const byId = new Map(S.live.map((c) => [c.child_id, c]));
  for (const u of changes) {
    const c = byId.get(u.child_id);
    if (!c) continue;  // a child the page has not seen yet: the next snapshot has it
    c.status = u.status; c.zones = u.zones;
    if (u.position && (!c.position || new Date(u.position.ts) >= new Date(c.position.ts))) c.position = u.position;
  }
  drawLive();
}

function alertsChanged() {  // the day's table is read again once, however many alerts came at once
  clearTimeout(LIVE.alerts);
  LIVE.alerts = setTimeout(() => loadAlerts().catch(() => {}), 300);
}

function startPolling() {
  if (S.timer) return;
  poll();
  S.timer = setInterval(() => { if (!document.hidden) poll(); }, 5000);
}
function stopPolling() { clearInterval(S.timer); S.timer = null; }

function connectLive() {
  if (LIVE.socket && LIVE.socket.readyState <= WebSocket.OPEN) return;  // connecting or open already
  clearTimeout(LIVE.reconnect);
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws/school?token=${encodeURIComponent(session.token)}&school_id=${S.schoolId}`);
  LIVE.socket = ws;
  if (!S.timer) { $("conn").className = "pill"; $("conn").textContent = t("conn.connecting"); }
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "hello") { LIVE.up = true; LIVE.retry = 0; stopPolling(); showLink(); }
    else if (m.type === "snapshot") { S.live = m.children; drawLive(); }
    else if (m.type === "children") applyChanges(m.children);
    else if (m.type === "alerts" || m.type === "alert") alertsChanged();
  };
  ws.onclose = async (ev) => {
    if (LIVE.socket !== ws) return;
    LIVE.socket = null; LIVE.up = false;
    if (ev.code === 1008) {  // refused or closed for its token: signed out if the token is gone
      try { await session.api("/api/v1/me"); } catch (e) {
        if (e.status === 401) { session.clear(); stopPolling(); $("conn").className = "pill out"; $("conn").textContent = t("conn.signedout"); return; }
      }
      if (LIVE.socket) return;  // a newer socket was made while the question was out
    }
    startPolling(); showLink();
    const wait = Math.min(30000, 1000 * 2 ** LIVE.retry) * (0.5 + Math.random() / 2);
    LIVE.retry += 1;
    LIVE.reconnect = setTimeout(connectLive, wait);
  };
}

function renderLegend() {
  $("legend").innerHTML = Object.entries(STATUS_COLOUR).map(([k, c]) => `<span><i style="background:${c};border-radius:50%;width:10px;height:10px"></i>${esc(t("status." + k))}</span>`).join("")
    + `<span><i style="background:#2563eb55"></i>${esc(t("legend.route"))}</span><span><i style="background:#ef444466;border:1px solid #b91c1c"></i>${esc(t("legend.zone"))}</span>`;
}

// --- tables --------------------------------------------------------------------------------------
function table(id, head, rows) {
  $(id).innerHTML = `<thead><tr>${head.map((h) => `<th scope="col">${esc(t(h))}</th>`).join("")}</tr></thead><tbody>${rows.join("") || `<tr><td colspan="${head.length}">${esc(t("none"))}</td></tr>`}</tbody>`;
}

async function loadChildren() {
  S.children = (await session.api(`/api/v1/children?school_id=${S.schoolId}&limit=1000`)).items;
  renderChildren();
}

function renderChildren() {
  const status = new Map(S.live.map((c) => [c.child_id, c]));
  const options = (sel) => `<option value="">—</option>` + S.routes.map((r) => `<option value="${r.id}" ${r.id === sel ? "selected" : ""}>${esc(r.properties.name)}</option>`).join("");
  table("children", ["name", "route", "tags", "guardians", "col.state"], S.children.map((c) => {
    const st = status.get(c.id);
    return `<tr><th scope="row">${esc(c.name)}</th>
      <td><select data-child-route="${c.id}" aria-label="${esc(t("route"))}: ${esc(c.name)}">${options(c.route_id)}</select></td>
      <td>${c.tags.map(esc).join(", ")}</td><td>${c.guardians.map((g) => `${g.priority}. ${esc(S.guardianNames.get(g.guardian_id) || "#" + g.guardian_id)}`).join(", ")}</td>
      <td>${st ? `<span class="badge st-${esc(st.status)}">${esc(t("status." + st.status))}</span>` : ""}</td></tr>`;
  }));
}

async function loadTables() {
  const [tags, guardians] = await Promise.all([session.api("/api/v1/tags?limit=1000"), session.api("/api/v1/guardians?limit=1000")]);
  const names = new Map(S.children.map((c) => [c.id, c.name]));
  S.guardianNames = new Map(guardians.items.map((g) => [g.id, g.name]));
  renderChildren();
  table("tags", ["tags", "child", "kind", "has_password"], tags.items.map((g) => `<tr><th scope="row">${esc(g.id)}</th><td>${esc(names.get(g.child_id) || g.child_id)}</td><td>${esc(tOr("tagkind." + g.kind, g.kind))}</td><td>${esc(t(g.has_mqtt_password ? "yes" : "no"))}</td></tr>`));
  table("guardians", ["name", "phone", "language", "children"], guardians.items.map((g) => `<tr><th scope="row">${esc(g.name)}</th><td>${esc(g.phone)}</td><td>${esc(tOr("lang." + g.language, g.language))}</td><td>${g.children.map((c) => esc(names.get(c.child_id) || c.child_id)).join(", ")}</td></tr>`));
}

const TODAY_SHOWN = 200;  // the day's list shows the newest this many; it says when there are more

async function loadAlerts() {
  // the server filters (the school's today, and without notices unless asked): the page never sees a
  // day's thousands of arrivals only to drop them
  const midnight = midnightIn(S.school && S.school.properties.timezone);
  const severities = $("with-info").checked ? "" : "&severity=critical&severity=warning";
  const page = await session.api(`/api/v1/alerts?since=${encodeURIComponent(midnight.toISOString())}${severities}&limit=${TODAY_SHOWN}`);
  const more = $("alerts-more");
  more.textContent = page.total > page.items.length ? t("alerts.more", { n: page.items.length, total: page.total }) : "";
  more.classList.toggle("hidden", page.total <= page.items.length);
  table("alerts", ["col.time", "child", "kind", "col.severity", "col.state"], page.items.map((a) => `<tr>
    <td>${esc(fmtTime(a.opened_at))}</td><th scope="row">${esc(a.child.name)}</th>
    <td>${esc(t("kind." + a.kind))}${a.zone ? ` · ${esc(a.zone.name)}` : ""}</td>
    <td><span class="sev ${esc(a.severity)}">${esc(t("sev." + a.severity))}</span></td>
    <td>${esc(t("state." + a.state))}${a.acknowledged_at ? ` · ${esc(t("acked"))} ${esc(fmtTime(a.acknowledged_at))}` : ""}${a.escalation_level ? ` · ↑${a.escalation_level}` : ""}</td></tr>`));
}

const zoneNames = new Map();
function zoneName(id) { return zoneNames.get(id) || `#${id}`; }

// Where the chosen route runs beside or across a danger zone (the registry works it out): there the
// zone minus the corridor is what counts for its children.
function showMeets() {
  const r = S.routes.find((x) => x.id === S.selected);
  const meets = r ? r.properties.meets_zones || [] : [];
  $("r-meets").innerHTML = meets.map((m) => `<li>${esc(t(`meets.${m.how}`, { zone: zoneName(m.zone_id), m: Math.round(m.length_m) }))}</li>`).join("");
}

async function loadZones() {
  const fc = await session.api("/api/v1/zones?limit=1000");
  for (const z of fc.features) zoneNames.set(z.id, z.properties.name);
  showMeets();
  if (zonesLayer) zonesLayer.remove();
  const around = routesLayer.getBounds().isValid() ? routesLayer.getBounds() : schoolMarker.getLatLng().toBounds(1000);
  zonesLayer = L.featureGroup().addTo(map);
  for (const z of fc.features) {
    if (!near(around, z)) continue;
    const layer = L.geoJSON(z, { style: ZONE_STYLE, pmIgnore: true, interactive: true });
    layer.bindTooltip(`${esc(z.properties.name)} (${esc(zoneKind(z.properties.kind))})`).addTo(zonesLayer);
  }
  zonesLayer.bringToBack();
}

// --- start ---------------------------------------------------------------------------------------
async function poll() {  // only while the live socket is down
  try { await loadLive(); await loadAlerts(); }
  catch (e) { $("conn").className = "pill offline"; $("conn").textContent = t("conn.offline"); }
}

async function start() {
  applyWords(); renderLegend();
  if (!session.token) { $("signin").classList.remove("hidden"); return; }
  try { S.me = await session.api("/api/v1/me"); } catch (e) {
    session.clear(); $("signin").classList.remove("hidden"); $("conn").className = "pill out"; $("conn").textContent = t("conn.signedout"); return;
  }
  const wanted = Number(new URLSearchParams(location.search).get("school")) || null;
  S.schoolId = S.me.school_id || wanted;
  if (!S.schoolId) { const first = await session.api("/api/v1/schools?limit=1"); S.schoolId = first.features.length ? first.features[0].id : null; }
  $("signin").classList.add("hidden"); $("app").classList.remove("hidden"); $("signout").classList.remove("hidden");
  S.school = await session.api(`/api/v1/schools/${S.schoolId}`);
  $("title").textContent = `${t("school.title")}: ${S.school.properties.name}`;
  document.title = `${t("school.title")}: ${S.school.properties.name}`;
  if (!map) {
    map = makeMap($("map"));
    map.on("pm:create", (e) => { S.drawing = e.layer; showDrawTools(false); $("r-name").focus(); });
  }
  const [lon, lat] = S.school.geometry.coordinates;
  map.setView([lat, lon], 15);
  if (schoolMarker) schoolMarker.remove();
  schoolMarker = L.circleMarker([lat, lon], { radius: 9, color: "#111827", weight: 3, fillColor: "#fde047", fillOpacity: 1, pmIgnore: true })
    .bindTooltip(esc(S.school.properties.name)).addTo(map);
  await loadRoutes();
  if (routesLayer.getBounds().isValid()) map.fitBounds(routesLayer.getBounds().pad(0.1));
  await loadChildren();
  connectLive();
  await Promise.all([loadTables(), loadZones()]);
  // a socket that neither opens nor fails (a proxy holding it): the map is polled meanwhile
  setTimeout(() => { if (!LIVE.up) { startPolling(); showLink(); } }, 5000);
}

setupSignIn(session, "signin", start);
setupLanguageSwitch($("lang"), () => { renderLegend(); if (S.school) { drawLive(); showLink(); $("title").textContent = `${t("school.title")}: ${S.school.properties.name}`; loadRoutes(); renderChildren(); loadAlerts(); loadTables(); } });
$("signout").addEventListener("click", () => { session.clear(); location.reload(); });
$("route-select").addEventListener("change", (ev) => selectRoute(ev.target.value ? Number(ev.target.value) : null));
$("route-new").addEventListener("click", startDrawing);
$("route-redraw").addEventListener("click", startEditing);
$("draw-finish").addEventListener("click", finishDrawing);
$("draw-cancel").addEventListener("click", () => { stopDrawing(); fillForm(); });
$("route-form").addEventListener("submit", saveRoute);
$("route-delete").addEventListener("click", deleteRoute);
$("upload-form").addEventListener("submit", upload);
$("with-info").addEventListener("change", loadAlerts);
$("children").addEventListener("change", async (ev) => {
  const id = ev.target.dataset && ev.target.dataset.childRoute;
  if (!id) return;
  try {
    await session.api(`/api/v1/children/${id}`, { method: "PATCH", body: { route_id: ev.target.value ? Number(ev.target.value) : null } });
    await loadChildren(); await loadRoutes();
  } catch (e) { alert(t("error", { e: e.message })); }
});
start();
