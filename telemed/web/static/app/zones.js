// The time zone (R-CAL-1, seed 000: set it so appointment times do not mix up when you
// travel): chosen in the profile, and asked once on the first login, the browser's zone
// offered for the patient to confirm (PATCH /me marks it confirmed on the server).

import { $, act, api, el, i18n, state, t, zone } from "./ui.js";

const RUSSIAN_ZONES = ["Europe/Kaliningrad", "Europe/Moscow", "Europe/Samara", "Asia/Yekaterinburg", "Asia/Omsk",
  "Asia/Novosibirsk", "Asia/Krasnoyarsk", "Asia/Irkutsk", "Asia/Yakutsk", "Asia/Vladivostok", "Asia/Magadan", "Asia/Kamchatka"];

export function renderProfile() {
  if (!state.me) return;
  $("profile-name").textContent = state.me.full_name;
  $("profile-phone").textContent = state.me.phone || "—";
  $("profile-birth").textContent = state.me.birth_date
    ? new Intl.DateTimeFormat(i18n.lang, { dateStyle: "long", timeZone: "UTC" }).format(new Date(state.me.birth_date)) : "—";
  $("profile-saved").textContent = "";
  $("profile-consent").textContent = state.me.consent_accepted_at ? t("profile.consent_given", {
    date: new Intl.DateTimeFormat(i18n.lang, { dateStyle: "long", timeZone: zone() }).format(new Date(state.me.consent_accepted_at)),
    version: state.me.consent_version || "",
  }) : "";
  fillZones($("timezone"), state.me.timezone || "Europe/Moscow");
}

/** The zones to choose from, Russian ones first, with `chosen` selected. */
function fillZones(select, chosen) {
  const all = Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : RUSSIAN_ZONES;
  const others = all.filter((z) => !RUSSIAN_ZONES.includes(z));
  if (chosen && !all.includes(chosen) && !RUSSIAN_ZONES.includes(chosen)) others.unshift(chosen);
  const option = (z) => el("option", { value: z, selected: z === chosen }, z.replace(/_/g, " "));
  select.replaceChildren(
    el("optgroup", { label: "Россия / Russia" }, ...RUSSIAN_ZONES.map(option)),
    el("optgroup", { label: "—" }, ...others.map(option)));
  select.value = chosen;
}

$("profile-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(event.submitter, async () => {
    state.me = await api.patch("/me", { timezone: $("timezone").value });
    $("profile-saved").textContent = t("profile.saved");
  });
});

/** The browser's own zone, when the platform knows it. */
function detected() {
  const browser = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const known = Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : RUSSIAN_ZONES;
  return browser && (known.includes(browser) || RUSSIAN_ZONES.includes(browser)) ? browser : state.me?.timezone || "Europe/Moscow";
}

let afterZone = () => {};

/** Whether the first-login question is still open: the zone has never been confirmed. */
export function zoneUnconfirmed() {
  return Boolean(state.me && !state.me.timezone_confirmed);
}

/** Ask for the zone (the caller shows the screen), then `next()`. */
export function prepareZone(next) {
  afterZone = next;
  const guess = detected();
  $("tz-detected").textContent = t("tz.detected", { zone: guess.replace(/_/g, " ") });
  fillZones($("tz-select"), guess);
}

document.querySelector('[data-testid="tz-confirm"]').addEventListener("click", (event) => {
  act(event.currentTarget, async () => {
    state.me = await api.patch("/me", { timezone: $("tz-select").value });
    afterZone();
  });
});
