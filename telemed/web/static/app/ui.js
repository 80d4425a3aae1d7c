// The patient app's shared state and helpers: the API client, the words, the current person
// and screen, and the small DOM helpers every screen module uses (STYLE.md: one module per
// screen, one shared state module).

import { ApiError, createApi } from "/static/js/api.js";
import { setupI18n } from "/static/js/i18n.js";
import { TEXTS } from "./texts.js";

export const api = createApi({ storageKey: "telemed.patient" });
export const i18n = setupI18n(TEXTS);
export const { t } = i18n;
export const $ = (id) => document.getElementById(id);

/** What every screen reads: who is logged in (`me`), the screen shown, the public config. */
export const state = { me: null, screen: null, config: { hotline: "" } };

/** The words of the current language, for lookups by a server code (`words().state[x]`). */
export function words() {
  return TEXTS[i18n.lang];
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "testid") node.dataset.testid = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function zone() {
  return state.me?.timezone || Intl.DateTimeFormat().resolvedOptions().timeZone;
}

export function when(iso, options = { dateStyle: "medium", timeStyle: "short" }) {
  // R-CAL-1: times are shown in the patient's own time zone, not the browser's.
  return new Intl.DateTimeFormat(i18n.lang, { ...options, timeZone: zone() }).format(new Date(iso));
}

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function say(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

export function explain(error) {
  if (error instanceof ApiError || error?.code) {
    const known = TEXTS[i18n.lang].errors[error.code];
    return known || error.message || error.code;
  }
  return String(error?.message || error);
}

/** Runs an action from a button: disables it meanwhile and shows any error in the alert. */
export async function act(button, fn) {
  if (button) button.disabled = true;
  say("");
  try {
    return await fn();
  } catch (error) {
    say(explain(error));
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function toast(text, { testid = "toast", actions = [], sticky = false, passing = true } = {}) {
  const close = el("button", { type: "button", class: "link", "aria-label": t("reminder.close"), onclick: () => box.remove() }, "×");
  const box = el("div", { class: "toast", role: "status", testid }, el("p", {}, text), ...actions, close);
  $("toasts").append(box);
  if (!sticky) {
    // Gone after 5 s (or on the next screen, when passing), so it never hides the page for long.
    if (passing) box.dataset.passing = "true";
    setTimeout(() => box.remove(), 5000);
  }
  return box;
}

/** An inline yes/no next to a button (no window.confirm: it blocks and tests dismiss it). */
export function confirmThen(button, question, fn) {
  const holder = button.parentElement;
  holder.querySelector(".confirm")?.remove();
  const yes = el("button", { type: "button", class: "primary", testid: "confirm-yes" }, t("yes"));
  const no = el("button", { type: "button", testid: "confirm-no" }, t("no"));
  const box = el("div", { class: "confirm", role: "group", "aria-label": question }, el("p", {}, question), yes, no);
  no.addEventListener("click", () => { box.remove(); button.focus(); });
  yes.addEventListener("click", () => { box.remove(); act(button, fn); });
  button.after(box);
  no.focus();
}

/** The zone beside a time (R-CAL-1): "Asia/Vladivostok, GMT+10", so a traveller cannot mix them up. */
export function zoneName() {
  const z = zone();
  const parts = new Intl.DateTimeFormat(i18n.lang, { timeZone: z, timeZoneName: "shortOffset" }).formatToParts(new Date());
  const offset = parts.find((p) => p.type === "timeZoneName")?.value || "";
  return `${z.replace(/_/g, " ")}, ${offset}`;
}

/** A time with its zone: every time the patient acts on carries the zone. */
export function whenZ(iso, options) {
  return `${when(iso, options)} (${zoneName()})`;
}

/** The hotline (R-FALLBACK-1) as a sentence with a tel: link, for login, check and call failures. */
export function hotlineBox(key, testid = "hotline") {
  const number = state.config.hotline;
  if (!number) return el("span", { hidden: true });
  const tel = `tel:${number.replace(/[^+\d]/g, "")}`;
  return el("p", { class: "hotline", testid },
    `${t(key)} `, el("a", { href: tel, testid: "hotline-number" }, number));
}
