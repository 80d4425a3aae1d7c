// What every console panel shares: the translations, the REST client, the live connection
// and the desk's state, plus the one place that turns an error into console words.

import { ApiError, createApi } from "/static/js/api.js";
import { byId } from "/static/js/dom.js";
import { setupI18n } from "/static/js/i18n.js";
import { STRINGS } from "./strings.js";

export const i18n = setupI18n(STRINGS);
export const { t } = i18n;
export const api = createApi({ storageKey: "telemed.console" });
export const $ = byId;
export const DOCTORS = new Set(["therapist", "paediatrician", "specialist", "psychologist"]);

export const s = {
  me: null,
  live: null,
  serverOffset: 0, // the server's clock minus ours (ms), from server_time and queue snapshots
  known: new Map(), // consultation id -> {patient_id, patient_name, age, channel, appointment}
  current: null, // the consultation I am with: its last consultation:state
  call: null, // {id, handle}
  handedOver: null, // the consultation I handed to a doctor (consultant)
  doctors: [], // GET /doctors, for names of booked doctors
  seenDoctor: new Set(), // consultations back from their doctor (nothing left to transfer to)
};

/** Hooks panels register; console.js calls them (language switch, entering the desk...). */
const hooks = new Map();
export function on(name, fn) {
  if (!hooks.has(name)) hooks.set(name, new Set());
  hooks.get(name).add(fn);
}
export function fire(name, ...args) {
  for (const fn of hooks.get(name) || []) {
    try {
      fn(...args);
    } catch (err) {
      console.error(err);
    }
  }
}

/** An error in the console's language: the server's code mapped to a string, else a generic
 * line in that language (never the server's English message in the Russian console). */
export function errorText(err) {
  const code = err instanceof ApiError ? err.code : err?.code || "error";
  const known = t(`errors.${code}`);
  if (known !== `errors.${code}`) return known;
  return t("errors.other", { code });
}

export function showError(node, err) {
  if (!err) {
    node.hidden = true;
    node.textContent = "";
    delete node.dataset.code;
    return;
  }
  node.textContent = errorText(err);
  node.dataset.code = err instanceof ApiError ? err.code : "error";
  node.hidden = false;
}

export function serverNow() {
  return Date.now() + s.serverOffset;
}

/** Learn the server's clock from a server_time stamp. */
export function syncClock(serverTime) {
  const at = Date.parse(serverTime || "");
  if (Number.isFinite(at)) s.serverOffset = at - Date.now();
}

export function localTime(iso) {
  return new Date(iso).toLocaleString(i18n.lang, { dateStyle: "short", timeStyle: "short" });
}

/** A time in a named zone, with the zone named (R-CAL-1): "15.01.2026, 20:00 (Asia/Vladivostok)". */
export function zonedTime(iso, zone) {
  const text = new Date(iso).toLocaleString(i18n.lang, { dateStyle: "medium", timeStyle: "short", timeZone: zone });
  return `${text} (${zone})`;
}

export function isDoctor() {
  return DOCTORS.has(s.me?.role);
}

export function isConsultant() {
  return s.me?.role === "consultant";
}

export function nameOf(p) {
  return p?.counterpart?.name || s.known.get(p?.consultation_id)?.patient_name || "";
}

export function doctorName(id) {
  return s.doctors.find((d) => d.doctor_id === id)?.name || "";
}
