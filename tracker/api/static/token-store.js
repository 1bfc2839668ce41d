// The guardian's token where the service worker can read it: IndexedDB (a worker has no localStorage).
// The page writes it when it signs in and deletes it when it signs out; the worker reads it to
// acknowledge an alert from a notification's "Acknowledge" button (why not a capability in the push
// message: tracker/alerts/push.py). Loaded by the page (<script>) and by the worker (importScripts).
"use strict";

const TokenStore = (() => {
  const DB = "tracker", STORE = "session", KEY = "guardian-token";
  function open() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  async function run(mode, act) {
    const db = await open();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        const req = act(tx.objectStore(STORE));
        tx.oncomplete = () => resolve(req.result);
        tx.onerror = () => reject(tx.error);
      });
    } finally { db.close(); }
  }
  return {
    get: () => run("readonly", (s) => s.get(KEY)).then((v) => v || ""),
    set: (token) => run("readwrite", (s) => s.put(token, KEY)),
    clear: () => run("readwrite", (s) => s.delete(KEY)),
  };
})();
