// The patient app's service worker, served at /sw.js (scope "/").
// - Caches the app shell only: the static files under /static/ and /vendor/, served from the
//   cache at once and refreshed in the background (a fast start on a poor network). Never
//   /api/ (medical data, tokens) and never the HTML page itself: both always come from the
//   network.
// - Shows Web Push messages as notifications: {title, body, url, tag}; the tag (the outbox
//   key) makes a resend replace the notification instead of adding a second one.
// - A tap opens the screen in `url`: the appointment for a reminder, the waiting screen
//   for a consultation; an open window of the app is focused and told where to go.

const SHELL_CACHE = "telemed-shell-v1";
const SHELL = [
  "/static/base.css",
  "/static/call.css",
  "/static/app/app.css",
  "/static/app/app.js",
  "/static/app/texts.js",
  "/static/app/notifications.js",
  "/static/app/push.js",
  "/static/js/api.js",
  "/static/js/live.js",
  "/static/js/i18n.js",
  "/static/js/dom.js",
  "/static/js/call.js",
  "/static/js/rtc.js",
  "/static/js/devicecheck.js",
  "/static/icons/icon-192.png",
  "/vendor/socket.io.esm.min.js",
];

self.addEventListener("install", (event) => {
  // One missing file must not stop the worker from installing: each is cached on its own.
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => Promise.allSettled(SHELL.map((url) => cache.add(url)))).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((name) => name !== SHELL_CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

function isShell(request) {
  if (request.method !== "GET") return false;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return false;
  return url.pathname.startsWith("/static/") || url.pathname.startsWith("/vendor/");
}

self.addEventListener("fetch", (event) => {
  if (!isShell(event.request)) return; // the network as usual: /api/, pages, sockets
  event.respondWith(caches.open(SHELL_CACHE).then(async (cache) => {
    const cached = await cache.match(event.request);
    const fresh = fetch(event.request).then((response) => {
      if (response.ok) cache.put(event.request, response.clone());
      return response;
    });
    if (cached) {
      event.waitUntil(fresh.catch(() => undefined));
      return cached;
    }
    return fresh;
  }));
});

/** The notification a push asks for; nothing but what the server put in it. */
function showPush(data) {
  return self.registration.showNotification(data.title || "Телемедицина", {
    body: data.body || "",
    tag: data.tag || undefined,
    data: { url: data.url || "/" },
    icon: "/static/icons/icon-192.png",
    badge: "/static/icons/icon-192.png",
  });
}

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { body: event.data ? event.data.text() : "" };
  }
  event.waitUntil(showPush(data));
});

/** Opens the notification's screen: an open window of the app goes there, else a new one. */
async function openFrom(notification) {
  notification.close();
  const target = new URL(notification.data?.url || "/", self.location.origin);
  if (target.origin !== self.location.origin) return undefined; // only our own screens
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = windows.find((client) => new URL(client.url).origin === self.location.origin);
  if (open) {
    open.postMessage({ type: "telemed:open", url: target.pathname + target.hash });
    // Focusing needs the click's user activation; without it the page still goes there.
    return open.focus().catch(() => open);
  }
  return self.clients.openWindow(target.href);
}

self.addEventListener("notificationclick", (event) => {
  event.waitUntil(openFrom(event.notification));
});
