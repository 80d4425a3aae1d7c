// Web Push in the patient app: the service worker, the permission and this device's
// subscription. The permission is asked only on a person's action (after a booking, or the
// button in the profile), never on the first load.

const ASKED_KEY = "telemed.push.asked";
const SUBSCRIBE_TIMEOUT_MS = 15000;
const UNSUBSCRIBE_TIMEOUT_MS = 5000;

/** Registers /sw.js (scope "/"); the app works the same without it. */
export async function registerWorker() {
  if (!("serviceWorker" in navigator)) return null;
  try {
    return await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  } catch (error) {
    console.warn("service worker not registered", error);
    return null;
  }
}

/** Can this browser take pushes at all? */
export function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

function keyBytes(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (base64url.length % 4)) % 4);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

/** Sends the browser's PushSubscription JSON as it is (POST /me/push-subscriptions). */
export async function registerSubscription(api, subscription) {
  const json = typeof subscription.toJSON === "function" ? subscription.toJSON() : subscription;
  await api.post("/me/push-subscriptions", {
    endpoint: json.endpoint,
    expirationTime: json.expirationTime ?? null,
    keys: { p256dh: json.keys.p256dh, auth: json.keys.auth },
  });
}

/**
 * Asks for the permission, subscribes with the server's key and registers the device.
 * Returns "on", "denied", "unsupported" or "failed" (e.g. the browser's push service is not
 * reachable).
 */
export async function enablePush(api) {
  if (!pushSupported()) return "unsupported";
  localStorage.setItem(ASKED_KEY, "1");
  const permission = await Notification.requestPermission();
  if (permission !== "granted") return "denied";
  const registration = (await registerWorker()) && (await navigator.serviceWorker.ready);
  if (!registration) return "unsupported";
  try {
    const { public_key: key } = await api.get("/push/config");
    // The browser's push service may be unreachable (then subscribe never settles): give up
    // after a while; reminders then come by SMS.
    const gaveUp = new Promise((_, reject) => setTimeout(() => reject(new Error("push service unreachable")), SUBSCRIBE_TIMEOUT_MS));
    const subscription = (await registration.pushManager.getSubscription())
      || (await Promise.race([registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) }), gaveUp]));
    await registerSubscription(api, subscription);
    return "on";
  } catch (error) {
    console.warn("push subscription failed", error);
    return "failed";
  }
}

/**
 * Stops pushes on this device: tells the server first (while the session works), then
 * unsubscribes from the browser's push service. Chromium settles at once even when its push
 * service fails (it drops the subscription locally and tells the service in the
 * background: seen with GCM answering 503); the cap is for a browser that would wait.
 */
export async function disablePush(api) {
  const registration = await navigator.serviceWorker?.getRegistration("/");
  const subscription = await registration?.pushManager.getSubscription();
  if (!subscription) return;
  await api.delete("/me/push-subscriptions", { endpoint: subscription.endpoint }).catch(() => {});
  const gaveUp = new Promise((resolve) => setTimeout(() => resolve(false), UNSUBSCRIBE_TIMEOUT_MS));
  await Promise.race([subscription.unsubscribe(), gaveUp]);
}

/** The state for the profile: "on", "off", "denied" or "unsupported". */
export async function pushState() {
  if (!pushSupported()) return "unsupported";
  if (Notification.permission === "denied") return "denied";
  const registration = await navigator.serviceWorker.getRegistration("/");
  const subscription = await registration?.pushManager.getSubscription();
  return subscription && Notification.permission === "granted" ? "on" : "off";
}

/** The person said "not now": never offer again on this device (the profile still can). */
export function markAsked() {
  localStorage.setItem(ASKED_KEY, "1");
}

/** Worth offering after a booking? Only if never asked and not decided yet. */
export function shouldOffer() {
  return pushSupported() && Notification.permission === "default" && !localStorage.getItem(ASKED_KEY);
}
