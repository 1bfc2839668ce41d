// The parent page's service worker (served as /sw.js so that its scope is the whole site, "/").
//
// Offline: the page's shell (HTML, styles, scripts, the map library, Seoul's districts, the icons) is
// kept at install; every request for it goes to the network first (the tracker's newest page when it
// can be reached) and falls back to the copy. The parent page's API reads (its children's statuses,
// alerts, routes, zones, tracks) are kept as they come, and answered from the copy when the network
// fails: the page then says that what it shows is the last known state, and since when.
//
// Push: every push message shows a notification (browsers require it), made of what the tracker put in
// the message (tracker/alerts/push.py: words in the guardian's language, its tag, its actions). Its
// "Acknowledge" button acknowledges the alert through the API with the guardian's token (IndexedDB,
// written by the page: token-store.js) and opens the page on that alert; a tap elsewhere opens it.
"use strict";

importScripts("/static/token-store.js");

const SHELL = "tracker-shell-v1";
const DATA = "tracker-data-v1";  // the parent page's last API answers; cleared when it signs out
const SHELL_FILES = [
  "/", "/config.js", "/manifest.webmanifest",
  "/static/app.css", "/static/common.js", "/static/parent.js", "/static/push.js", "/static/token-store.js",
  "/static/vendor/leaflet/leaflet.js", "/static/vendor/leaflet/leaflet.css", "/static/seoul-districts.geojson",
  "/static/icon-192.png", "/static/badge-96.png",
];
const SHELL_PATHS = new Set(SHELL_FILES);
const WAIT_MS = 6000;  // a network this slow to answer is as good as none when a copy is at hand

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(SHELL_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name !== SHELL && name !== DATA) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

// --- offline ---------------------------------------------------------------------------------------
self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    if (url.pathname === "/") event.respondWith(networkFirst(request, SHELL, "/"));
  } else if (SHELL_PATHS.has(url.pathname)) {
    event.respondWith(networkFirst(request, SHELL, url.pathname));
  } else if (url.pathname.startsWith("/api/v1/")) {
    event.respondWith(apiRead(event));
  }
});

async function networkFirst(request, cacheName, key, onCopy) {
  const cache = await caches.open(cacheName);
  const network = fetch(request).then(async (response) => {
    if (response.ok) await cache.put(key, response.clone());
    return response;
  });
  const copy = await cache.match(key);
  if (!copy) return network;
  const slow = new Promise((resolve) => setTimeout(() => resolve(null), WAIT_MS));
  const answer = await Promise.race([network.catch(() => null), slow]);
  if (answer) return answer;
  network.catch(() => null);  // still refreshes the copy if it comes late
  if (onCopy) onCopy(copy);
  return copy;
}

// The parent page's API reads are kept (the school and city pages' are not: they are not this app's).
async function apiRead(event) {
  const client = event.clientId ? await self.clients.get(event.clientId) : null;
  if (!client || new URL(client.url).pathname !== "/") return fetch(event.request);
  const url = new URL(event.request.url);
  return networkFirst(event.request, DATA, url.pathname + url.search, (copy) => {
    client.postMessage({ type: "from-cache", path: url.pathname, saved_at: copy.headers.get("date") });
  });
}

// --- push ------------------------------------------------------------------------------------------
self.addEventListener("push", (event) => {
  let message = null;
  try { message = event.data ? event.data.json() : null; } catch (e) { message = null; }
  event.waitUntil(show(message));
});

async function show(message) {
  const n = message && message.notification;
  if (!n) {  // not one of the tracker's messages: something happened, the page says what
    await self.registration.showNotification("통학 안전 · School route", { body: "", icon: "/static/icon-192.png" });
    return;
  }
  await self.registration.showNotification(n.title, {
    body: n.body, lang: n.lang, tag: n.tag, timestamp: n.timestamp,
    requireInteraction: n.requireInteraction, renotify: n.renotify, silent: n.silent,
    vibrate: message.severity === "critical" ? [300, 100, 300, 100, 300] : undefined,
    icon: "/static/icon-192.png", badge: "/static/badge-96.png",
    actions: n.actions,
    data: { alert_id: message.alert_id, url: n.url },
  });
  // an open page hears of it too (its websocket usually first): it refreshes the alert
  for (const c of await self.clients.matchAll({ type: "window" })) {
    c.postMessage({ type: "pushed", alert_id: message.alert_id });
  }
}

self.addEventListener("notificationclick", (event) => {
  const notification = event.notification;
  const { alert_id: alertId, url } = notification.data || {};
  notification.close();
  // both at once: a browser lets a worker open or focus a window only soon after the tap
  const work = Promise.allSettled([
    event.action === "ack" && alertId ? acknowledge(alertId) : Promise.resolve(),
    openPage(alertId, url || "/"),
  ]);
  event.waitUntil(work);
});

async function acknowledge(alertId) {
  const token = await TokenStore.get();
  if (!token) return false;  // signed out on this browser: the page, opened on the alert, asks to sign in
  const r = await fetch(`/api/v1/alerts/${alertId}/ack`, {
    method: "POST", headers: { Authorization: `Bearer ${token}` },
  }).catch(() => null);
  const done = Boolean(r && r.ok);
  for (const c of await self.clients.matchAll({ type: "window" })) {
    c.postMessage({ type: done ? "acked" : "ack-failed", alert_id: alertId });
  }
  return done;
}

async function openPage(alertId, url) {
  const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const page = pages.find((c) => new URL(c.url).pathname === "/");
  if (page) {
    page.postMessage({ type: "open-alert", alert_id: alertId });
    return page.focus();
  }
  return self.clients.openWindow(url);
}
