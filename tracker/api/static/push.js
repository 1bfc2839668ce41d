// The parent page as an installed app: its service worker (/sw.js: the shell offline, the last known
// statuses, notifications from push messages), and this browser's push subscription.
//
// Permission is asked only when the parent presses "Allow notifications" (never on load: a prompt
// nobody asked for is mostly refused, and a refusal is for good). With the permission granted, the page
// keeps this browser subscribed with the tracker's current VAPID key, quietly, each time it starts, so
// a subscription a push service dropped (or one made with a key the tracker no longer has) is renewed.
"use strict";

const Push = {
  supported: "serviceWorker" in navigator && "PushManager" in window && "Notification" in window,
  SUBSCRIBE_MS: 30000,  // a browser without a reachable push service never answers subscribe()

  // The worker for the app (offline shell, notifications); null where the browser has none.
  async register() {
    if (!("serviceWorker" in navigator)) return null;
    try { return await navigator.serviceWorker.register("/sw.js", { scope: "/" }); } catch (e) { return null; }
  },

  // Subscribe this browser to the guardian's alerts (or renew its subscription) and tell the tracker.
  async subscribe(session) {
    if (!this.supported || Notification.permission !== "granted") return null;
    const { public_key: key } = await (await fetch("/api/v1/push/key")).json();
    const registration = await navigator.serviceWorker.ready;
    let sub = await registration.pushManager.getSubscription();
    if (sub && base64url(sub.options.applicationServerKey) !== key) { await sub.unsubscribe(); sub = null; }
    if (!sub) {
      sub = await Promise.race([
        registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: fromBase64url(key) }),
        new Promise((_, reject) => setTimeout(() => reject(new DOMException("the browser's push service did not answer", "TimeoutError")), this.SUBSCRIBE_MS)),
      ]);
    }
    await session.api("/api/v1/me/push-subscriptions", { method: "POST", body: sub.toJSON() });
    return sub;
  },

  // Signing out (or the token refused): the worker's copy of the token and the kept API answers go, and
  // this browser is told nothing more about the guardian's children.
  async forget(token) {
    await TokenStore.clear().catch(() => null);
    if ("caches" in window) await caches.delete("tracker-data-v1").catch(() => null);
    if (!this.supported) return;
    const registration = await navigator.serviceWorker.getRegistration("/");
    const sub = registration && await registration.pushManager.getSubscription();
    if (!sub) return;
    await fetch(`/api/v1/me/push-subscriptions?endpoint=${encodeURIComponent(sub.endpoint)}`, {
      method: "DELETE", headers: { Authorization: `Bearer ${token}` },
    }).catch(() => null);
    await sub.unsubscribe().catch(() => null);
  },
};

// Why subscribing failed, in the page's words. The browser's own message is in the browser's language
// (English, mostly) and for developers: only its kind is told (DOMException names; TimeoutError: the
// browser's push service never answered); a kind not known here is an unexpected error. A failure of
// the tracker's API is already in the page's words (Session.api).
function pushFailure(e) {
  if (e && typeof e.status === "number") return e.message;
  const key = `push.why.${e && e.name}`;
  return t(key in WORDS.en ? key : "push.why.other");
}

function base64url(buffer) {
  if (!buffer) return "";
  return btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function fromBase64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}
