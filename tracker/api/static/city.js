// The city page (administrators): danger zones drawn, edited or uploaded, with kind, severity and hours.
"use strict";

const session = new Session("tracker-admin-token");
const C = { zones: [], selected: null, drawn: null, edited: null };
let map = null, zonesLayer = null, schoolsLayer = null;

function msg(id, text, error) { const el = $(id); el.textContent = text; el.className = error ? "error" : ""; }

async function loadZones() {
  const fc = await session.api("/api/v1/zones?limit=1000");
  C.zones = fc.features;
  const sel = $("zone-select");
  sel.innerHTML = C.zones.map((z) => `<option value="${z.id}">${esc(z.properties.name)} · ${esc(zoneKind(z.properties.kind))}${z.properties.active ? "" : ` (${esc(t("zone.off"))})`}</option>`).join("")
    + `<option value="">${esc(t("new"))}…</option>`;
  if (C.selected !== null && !C.zones.some((z) => z.id === C.selected)) C.selected = null;
  sel.value = C.selected === null ? "" : String(C.selected);
  fillForm(); drawZones();
}

function fillForm() {
  const z = C.zones.find((x) => x.id === C.selected);
  $("z-name").value = z ? z.properties.name : "";
  $("z-kind").value = zoneKind(z ? z.properties.kind : "construction");  // in words; saved as its code
  $("z-severity").value = z ? z.properties.severity : "critical";
  $("z-hours").value = z ? windowsText(z.properties.hours || []) : "";
  $("z-active").checked = z ? z.properties.active : true;
  $("zone-delete").disabled = !z; $("zone-edit").disabled = !z;
}

function drawZones() {
  if (zonesLayer) zonesLayer.remove();
  zonesLayer = L.featureGroup().addTo(map);
  for (const z of C.zones) {
    const chosen = z.id === C.selected;
    const style = chosen ? { color: "#b45309", weight: 3, fillColor: "#f59e0b", fillOpacity: 0.45 } : { ...ZONE_STYLE, fillOpacity: z.properties.active ? 0.3 : 0.08, dashArray: z.properties.active ? null : "4 4" };
    L.geoJSON(z, { style, pmIgnore: true }).bindTooltip(`${esc(z.properties.name)} (${esc(zoneKind(z.properties.kind))})`)
      .on("click", () => selectZone(z.id)).addTo(zonesLayer);
  }
}

function selectZone(id) {
  stopDrawing(); msg("zone-msg", "");
  C.selected = id; $("zone-select").value = id === null ? "" : String(id);
  fillForm(); drawZones();
  const z = C.zones.find((x) => x.id === id);
  if (z) map.fitBounds(L.geoJSON(z).getBounds().pad(0.5));
}

function showDrawTools(on) {
  $("draw-finish").classList.toggle("hidden", !on); $("draw-cancel").classList.toggle("hidden", !on);
  $("draw-hint").classList.toggle("hidden", !on);
}
function startDrawing() {
  stopDrawing(); C.selected = null; $("zone-select").value = ""; fillForm(); drawZones();
  map.pm.enableDraw("Polygon", { snappable: false, pathOptions: { color: "#b45309", fillColor: "#f59e0b", fillOpacity: 0.45 } });
  showDrawTools(true);
}
function startEditing() {
  const z = C.zones.find((x) => x.id === C.selected);
  if (!z) return;
  stopDrawing();
  C.edited = L.geoJSON(z, { style: { color: "#b45309", weight: 3, fillColor: "#f59e0b", fillOpacity: 0.45 } }).addTo(map);
  C.edited.eachLayer((l) => l.pm.enable({ snappable: false, allowSelfIntersection: false }));
  showDrawTools(true);
}
function finishDrawing() {
  if (map.pm.Draw.Polygon._enabled) map.pm.Draw.Polygon._finishShape();
  if (C.edited) C.edited.eachLayer((l) => l.pm.disable());
  showDrawTools(false); $("z-name").focus();
}
function stopDrawing() {
  if (map && map.pm.globalDrawModeEnabled()) map.pm.disableDraw();
  if (C.edited) { C.edited.remove(); C.edited = null; }
  if (C.drawn) { C.drawn.remove(); C.drawn = null; }
  showDrawTools(false);
}
function pendingGeometry() {
  if (C.drawn) return C.drawn.toGeoJSON().geometry;
  if (C.edited) { const f = C.edited.toGeoJSON().features[0]; return f ? f.geometry : null; }
  return null;
}

async function saveZone(ev) {
  ev.preventDefault();
  msg("zone-msg", "");  // the last save's word does not stand for this one
  let props;
  try {
    const hours = parseWindows($("z-hours").value);
    const kind = zoneKindCode($("z-kind").value);
    if (!kind) throw new Error(t("zone.kind.bad", { word: $("z-kind").value.trim() }));
    props = { name: $("z-name").value.trim(), kind, severity: $("z-severity").value, hours: hours.length ? hours : null, active: $("z-active").checked };
  } catch (e) { msg("zone-msg", t("error", { e: e.message }), true); return; }
  const geometry = pendingGeometry();
  try {
    let saved;
    if (C.selected === null) {
      if (!geometry) { msg("zone-msg", t("zone.drawhint"), true); return; }
      saved = await session.api("/api/v1/zones", { method: "POST", body: { type: "Feature", geometry, properties: props } });
    } else {
      saved = await session.api(`/api/v1/zones/${C.selected}`, { method: "PATCH", body: { type: "Feature", ...(geometry ? { geometry } : {}), properties: props } });
    }
    stopDrawing(); C.selected = saved.id; await loadZones();
    msg("zone-msg", t("zone.saved"));
  } catch (e) { msg("zone-msg", t("error", { e: e.message }), true); }
}

async function deleteZone() {
  const z = C.zones.find((x) => x.id === C.selected);
  if (!z || !confirm(`${t("delete")}: ${z.properties.name}?`)) return;
  try { await session.api(`/api/v1/zones/${z.id}`, { method: "DELETE" }); C.selected = null; await loadZones(); msg("zone-msg", t("zone.deleted")); }
  catch (e) { msg("zone-msg", t("error", { e: e.message }), true); }
}

async function upload(ev) {
  ev.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) return;
  const gpx = /\.gpx$/i.test(file.name);
  try {
    const res = await session.api("/api/v1/import", { method: "POST", body: await file.text(), headers: { "Content-Type": gpx ? "application/gpx+xml" : "application/geo+json" } });
    msg("upload-msg", t("upload.done", { n: res.created.length, u: res.updated.length }));
    await loadZones();
  } catch (e) { msg("upload-msg", t("error", { e: e.message }), true); }
}

// the kinds offered for a zone, by their names in the page's language (zoneKindCode turns the name
// back into the code when the zone is saved)
function renderKinds() {
  $("z-kinds").innerHTML = ZONE_KINDS.map((k) => `<option value="${esc(zoneKind(k))}"></option>`).join("");
}

async function start() {
  applyWords(); renderKinds();
  if (!session.token) { $("signin").classList.remove("hidden"); return; }
  try { await session.api("/api/v1/me"); } catch (e) { session.clear(); $("signin").classList.remove("hidden"); return; }
  $("signin").classList.add("hidden"); $("app").classList.remove("hidden"); $("signout").classList.remove("hidden");
  if (!map) {
    map = makeMap($("map"));
    map.on("pm:create", (e) => { C.drawn = e.layer; showDrawTools(false); $("z-name").focus(); });
  }
  const schools = await session.api("/api/v1/schools?limit=1000").catch(() => ({ features: [] }));
  if (schoolsLayer) schoolsLayer.remove();
  schoolsLayer = L.geoJSON(schools, {
    pmIgnore: true,
    pointToLayer: (f, ll) => L.circleMarker(ll, { radius: 6, color: "#111827", weight: 2, fillColor: "#fde047", fillOpacity: 1, pmIgnore: true }),
    onEachFeature: (f, l) => l.bindTooltip(esc(f.properties.name)),
  }).addTo(map);
  await loadZones();
  const all = zonesLayer.getBounds();
  if (all.isValid()) map.fitBounds(all.pad(0.05));
}

setupSignIn(session, "signin", start);
setupLanguageSwitch($("lang"), () => { renderKinds(); if (C.zones.length) loadZones(); });
$("signout").addEventListener("click", () => { session.clear(); location.reload(); });
$("zone-select").addEventListener("change", (ev) => selectZone(ev.target.value ? Number(ev.target.value) : null));
$("zone-new").addEventListener("click", startDrawing);
$("zone-edit").addEventListener("click", startEditing);
$("draw-finish").addEventListener("click", finishDrawing);
$("draw-cancel").addEventListener("click", () => { stopDrawing(); fillForm(); drawZones(); });
$("zone-form").addEventListener("submit", saveZone);
$("zone-delete").addEventListener("click", deleteZone);
$("upload-form").addEventListener("submit", upload);
start();
