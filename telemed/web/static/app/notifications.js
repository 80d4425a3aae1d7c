// The patient's notifications: the list screen (#notifications) with unread marks, kept live
// by `notification:new`; the unread count in the menu; the push switch in the profile; the
// offer to turn pushes on after a booking; and opening the screen a tapped push names
// (#booking/APPOINTMENT highlights that appointment).
//
// app.js wires it with a few hooks: setupNotifications({api, i18n}) once, then
// onScreen(name) from show(), onLive(live) from startLive(), offerPush() after a booking,
// beforeLogout() before the session ends (this device stops taking the patient's pushes).

import { el } from "/static/js/dom.js";
import { disablePush, enablePush, markAsked, pushState, registerWorker, shouldOffer } from "./push.js";

const WORDS = {
  ru: {
    nav: "Уведомления",
    title: "Уведомления",
    none: "Уведомлений пока нет.",
    open: "Открыть",
    read: "Прочитано",
    unread: "Новое",
    unread_count: "непрочитанных: {n}",
    push_title: "Уведомления на телефон",
    push_hint: "Напоминание за 10 минут до консультации и другие сообщения клиники придут, даже когда приложение закрыто.",
    push_enable: "Включить уведомления",
    push_on: "Уведомления включены на этом устройстве.",
    push_off: "Уведомления выключены.",
    push_denied: "Уведомления запрещены в настройках браузера.",
    push_unsupported: "Этот браузер не поддерживает уведомления.",
    push_failed: "Не удалось подписаться на уведомления. Напоминания придут по SMS.",
    offer: "Включить напоминание о консультации на этот телефон?",
    offer_yes: "Включить",
    offer_no: "Не сейчас",
  },
  en: {
    nav: "Notifications",
    title: "Notifications",
    none: "No notifications yet.",
    open: "Open",
    read: "Mark read",
    unread: "New",
    unread_count: "{n} unread",
    push_title: "Notifications on this phone",
    push_hint: "The reminder 10 minutes before a consultation and other messages from the clinic arrive even when the app is closed.",
    push_enable: "Turn on notifications",
    push_on: "Notifications are on for this device.",
    push_off: "Notifications are off.",
    push_denied: "Notifications are blocked in the browser settings.",
    push_unsupported: "This browser cannot show notifications.",
    push_failed: "Could not subscribe to notifications. Reminders will come by SMS.",
    offer: "Get the consultation reminder on this phone?",
    offer_yes: "Turn on",
    offer_no: "Not now",
  },
};

export function setupNotifications({ api, i18n }) {
  const words = () => WORDS[i18n.lang] || WORDS.ru;
  const w = (key, n) => words()[key].replace("{n}", String(n));
  let items = null; // the list as last loaded, newest first
  let unread = 0;
  let current = null;

  // --- the page parts this module owns ----------------------------------------------------
  const badge = el("span", { class: "badge", "data-testid": "unread-count", hidden: true });
  const navLink = el("a", { href: "#notifications", "data-testid": "nav-notifications" }, el("span", {}), badge);
  const profileLink = document.querySelector('#nav a[href="#profile"]');
  document.getElementById("nav").insertBefore(navLink, profileLink);
  const list = el("ul", { id: "notifications", class: "items", "data-testid": "notifications" });
  const heading = el("h1", { id: "notifications-title" });
  const section = el("section", { "data-screen": "notifications", hidden: true, "aria-labelledby": "notifications-title" }, heading, list);
  document.getElementById("content").append(section);

  const pushStatus = el("p", { class: "hint", role: "status", "data-testid": "push-status" });
  const pushButton = el("button", { type: "button", "data-testid": "push-enable" });
  const pushBox = el("div", { class: "push-settings" }, el("h2", {}), el("p", { class: "hint" }), pushStatus, el("div", { class: "actions" }, pushButton));
  const logout = document.getElementById("logout");
  logout.parentElement.insertBefore(pushBox, logout);

  function label() {
    navLink.firstChild.textContent = w("nav");
    heading.textContent = w("title");
    pushBox.querySelector("h2").textContent = w("push_title");
    pushBox.querySelector("p.hint").textContent = w("push_hint");
    pushButton.textContent = w("push_enable");
    badge.textContent = unread ? String(unread) : "";
    badge.hidden = !unread;
    badge.setAttribute("aria-label", w("unread_count", unread));
  }

  // --- the list -------------------------------------------------------------------------------
  function when(iso) {
    return new Intl.DateTimeFormat(i18n.lang, { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
  }

  async function markRead(item) {
    if (item.read) return;
    await api.post(`/notifications/${item.notification_id}/read`);
    item.read = true;
    unread = Math.max(0, unread - 1);
    render();
  }

  function render() {
    label();
    if (!items || current !== "notifications") return;
    if (!items.length) {
      list.replaceChildren(el("li", { class: "empty" }, w("none")));
      return;
    }
    list.replaceChildren(...items.map((item) => {
      const open = el("a", { href: item.url, class: "button", "data-testid": "notification-open" }, w("open"));
      open.addEventListener("click", () => { markRead(item).catch(() => {}); });
      const read = el("button", { type: "button", "data-testid": "notification-read" }, w("read"));
      read.addEventListener("click", () => { markRead(item).catch(() => {}); });
      return el("li", { "data-testid": "notification", "data-notification-id": item.notification_id, "data-read": String(item.read), class: item.read ? "read" : "unread" },
        item.read ? "" : el("span", { class: "badge", "data-testid": "notification-unread" }, w("unread")),
        el("strong", {}, item.title),
        el("p", {}, item.text),
        el("p", { class: "hint" }, when(item.created_at)),
        el("div", { class: "actions" }, open, item.read ? "" : read));
    }));
  }

  async function load() {
    const answer = await api.get("/notifications");
    items = answer.items;
    unread = answer.unread;
    render();
  }

  function arrived() {
    // Reload rather than merge: a load in flight when the event came would drop it.
    load().catch((error) => console.warn(error));
  }

  // --- the push switch in the profile --------------------------------------------------------
  async function showPushState(state) {
    const shown = state || (await pushState());
    pushStatus.textContent = w(`push_${shown}`);
    pushButton.hidden = shown === "on" || shown === "unsupported" || shown === "denied";
  }

  pushButton.addEventListener("click", async () => {
    pushButton.disabled = true;
    try {
      await showPushState(await enablePush(api));
    } finally {
      pushButton.disabled = false;
    }
  });

  // --- a tapped push: the service worker names the screen ------------------------------------
  navigator.serviceWorker?.addEventListener("message", (event) => {
    if (event.data?.type !== "telemed:open") return;
    const target = new URL(event.data.url, location.origin);
    if (target.origin === location.origin && target.hash) location.hash = target.hash;
  });

  /** #booking/ID: show that appointment once the booking screen has drawn it. The screen
   *  draws its list again when its fresh load arrives (after this runs, or before): the
   *  mark is put on whichever item is there, for a few seconds. */
  function highlightAppointment() {
    const id = decodeURIComponent(location.hash.split("/")[1] || "");
    const box = document.getElementById("appointments");
    if (!id || !box) return;
    let focused = false;
    const mark = () => {
      const item = box.querySelector(`[data-appointment-id="${CSS.escape(id)}"]`);
      if (!item || item.dataset.highlight === "true") return;
      item.classList.add("highlight");
      item.dataset.highlight = "true";
      item.tabIndex = -1;
      // Focus follows the item while it is redrawn, unless the person has moved on.
      if (!focused || document.activeElement === document.body) {
        item.scrollIntoView({ block: "center" });
        item.focus({ preventScroll: true });
        focused = true;
      }
    };
    mark();
    const watch = new MutationObserver(mark);
    watch.observe(box, { childList: true, subtree: true });
    setTimeout(() => watch.disconnect(), 10000);
  }

  i18n.onChange(render);
  label();
  registerWorker();

  return {
    /** show() calls this for every screen it shows. */
    onScreen(name) {
      current = name;
      if (name === "notifications") load().catch((error) => console.warn(error));
      if (name === "profile") showPushState().catch(() => {});
      if (name === "booking") highlightAppointment();
    },
    /** startLive() calls this with the new connection. */
    onLive(live) {
      live.on("notification:new", arrived);
      load().catch(() => {});
    },
    /** Logging out: this device unsubscribes and the server forgets it (DELETE while the
     *  session still works). Never blocks the logout: the server also drops the
     *  subscriptions this session registered when it revokes the token. */
    async beforeLogout() {
      try {
        await disablePush(api);
      } catch (error) {
        console.warn("push not turned off", error);
      }
      items = null;
      unread = 0;
      render();
    },
    /** After a booking: offer the reminder on this phone, once, on the person's tap. In the
     *  booking screen under my appointments, not over the page. */
    offerPush() {
      if (!shouldOffer() || document.querySelector('[data-testid="push-offer"]')) return;
      const yes = el("button", { type: "button", class: "primary", "data-testid": "push-offer-yes" }, w("offer_yes"));
      const no = el("button", { type: "button", "data-testid": "push-offer-no" }, w("offer_no"));
      const box = el("div", { class: "push-offer", role: "status", "data-testid": "push-offer" }, el("p", {}, w("offer")), el("div", { class: "actions" }, yes, no));
      no.addEventListener("click", () => {
        markAsked();
        box.remove();
      });
      yes.addEventListener("click", async () => {
        box.remove();
        await enablePush(api);
      });
      const mine = document.getElementById("appointments");
      if (mine) mine.after(box);
    },
  };
}
