// The patient app at /: login, consent, profile, the urgent consultation (queue, call),
// booking, reminders. One screen (<section data-screen>) is visible at a time; the server's
// consultation:state decides between the waiting and call screens, so a reload comes back.
// The other screens live in their own modules: check.js, card.js, records.js, opinions.js,
// zones.js, booking.js; the shared state and helpers in ui.js.

import { ApiError } from "/static/js/api.js";
import { connectLive } from "/static/js/live.js";
import {
  $, act, api, confirmThen, el, explain, hotlineBox, i18n, say, setText, state, t, toast, when, whenZ, words,
} from "./ui.js";
import { loadSlots } from "./booking.js";
import { loadCard, uploadFiles } from "./card.js";
import { prepareCheck } from "./check.js";
import { loadCalendar, loadRecords, showFeed } from "./records.js";
import { loadOpinions, showConclusion } from "./opinions.js";
import { prepareZone, renderProfile, zoneUnconfirmed } from "./zones.js";
import { setupNotifications } from "./notifications.js";

const notes = setupNotifications({ api, i18n }); // the list, pushes, the service worker

const NAV_SCREENS = ["home", "booking", "card", "calendar", "records", "opinions", "profile", "check", "notifications"];
const WAITING = new Set(["waiting_consultant", "waiting_doctor"]);
const IN_CALL = new Set(["with_consultant", "with_doctor"]);

let live = null;
let consultation = null; // the open consultation as the server last described it
let call = null; // {id, key, handle}
let callMounting = 0;
let closedNote = null;

// --- screens --------------------------------------------------------------------------------

function show(name, { focus = true } = {}) {
  if (name !== state.screen) {
    say("");
    for (const old of document.querySelectorAll('.toast[data-passing="true"]')) old.remove();
  }
  state.screen = name;
  for (const section of document.querySelectorAll("[data-screen]")) section.hidden = section.dataset.screen !== name;
  const loggedIn = Boolean(state.me && !state.me.consent_required);
  $("nav").hidden = !loggedIn || name === "who" || name === "timezone";
  renderActing();
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const heading = document.querySelector(`[data-screen="${name}"] h1`);
  document.title = `${heading?.textContent || ""} — ${t("brand")}`;
  if (focus && heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
  if (name === "home") renderHome();
  if (name === "booking") loadBooking();
  if (name === "card") loadCard();
  if (name === "calendar") loadCalendar();
  if (name === "records") loadRecords();
  if (name === "profile") renderProfile();
  if (name === "check") prepareCheck();
  if (name === "opinions") loadOpinions();
  notes.onScreen(name);
}

function route() {
  if (!state.me || state.me.consent_required) return undefined;
  // R-CAL-1: the zone is asked once, on the first login, before anything else.
  if (zoneUnconfirmed()) return askZone(route);
  const name = location.hash.slice(1);
  if (name === "consultation" || (!name && consultation)) return showConsultation(true);
  // R-SECOND: the link the consultant delivers into the chat, /#/conclusions/ID.
  const conclusion = /^\/conclusions\/([\w-]+)$/.exec(name);
  if (conclusion) {
    show("conclusion");
    return showConclusion(conclusion[1]);
  }
  const screen = name.split("/")[0]; // #booking/ID: a pushed appointment
  show(NAV_SCREENS.includes(screen) ? screen : "home");
  return undefined;
}

function askZone(next) {
  prepareZone(next);
  show("timezone");
}

function go(name) {
  if (location.hash === `#${name}`) route();
  else location.hash = name;
}

// --- login and consent ----------------------------------------------------------------------

let loginPhone = "";

$("phone-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const button = event.submitter;
  act(button, async () => {
    loginPhone = $("phone").value.trim();
    await api.post("/auth/otp", { phone: loginPhone });
    $("code-sent").textContent = t("login.sent", { phone: loginPhone });
    $("code-form").hidden = false;
    $("phone-form").hidden = true;
    $("code").focus();
  });
});

$("change-phone").addEventListener("click", () => {
  $("code-form").hidden = true;
  $("phone-form").hidden = false;
  $("phone").focus();
});

$("code-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(event.submitter, async () => {
    const session = await api.post("/auth/otp/verify", { phone: loginPhone, code: $("code").value.trim() });
    if (session.role !== "patient") throw new ApiError("forbidden", "This page is for patients; staff use /console.");
    api.setSession(session);
    $("code").value = "";
    $("code-form").hidden = true;
    $("phone-form").hidden = false;
    // Several people insured on this phone (a parent and a child): ask who it is for first.
    if (session.patients?.length > 1) return showWho();
    return enter();
  });
});

// --- whose app it is: several insured people on one phone (R-ROUTE-1, a parent for a child) ---

function people() {
  return api.session?.patients || [];
}

function renderActing() {
  const several = people().length > 1 && api.session;
  $("acting").hidden = !several || state.screen === "login";
  if (!several) return;
  // On the choosing screen itself "Change" would lead nowhere.
  $("acting").querySelector('[data-testid="switch-patient"]').hidden = state.screen === "who";
  const current = people().find((p) => p.patient_id === api.session.user_id);
  $("acting-name").textContent = state.me?.full_name || current?.full_name || "";
  for (const line of document.querySelectorAll('[data-testid="consultation-for"]')) {
    line.textContent = t("who.for", { name: $("acting-name").textContent });
  }
}

function showWho() {
  show("who");
  const list = $("who-list");
  list.replaceChildren(...people().map((person) => {
    const current = person.patient_id === api.session?.user_id;
    return el("li", {}, el("button", {
      type: "button",
      class: current ? "primary" : "",
      testid: "patient-choice",
      "data-patient-id": person.patient_id,
      "aria-current": current ? "true" : null,
      onclick: (event) => act(event.currentTarget, () => switchTo(person.patient_id)),
    }, person.full_name));
  }));
}

/** Act for another person on the phone: a new token for them, then their own app. */
async function switchTo(patientId) {
  if (patientId !== api.session.user_id) {
    const patients = people();
    const issued = await api.post("/auth/switch", { patient_id: patientId });
    stopLive();
    state.me = null;
    showFeed(null);
    api.setSession({ ...issued, patients });
  }
  if (location.hash) history.replaceState(null, "", location.pathname);
  await enter();
}

$("acting").querySelector('[data-testid="switch-patient"]').addEventListener("click", () => {
  // One consultation at a time: the person in the queue or the call keeps the app until it ends.
  if (consultation && (WAITING.has(consultation.state) || IN_CALL.has(consultation.state))) return say(t("who.busy"));
  return showWho();
});

async function showConsent() {
  show("consent");
  // A child's consent is given by their representative (a parent on the same phone).
  const variant = state.me?.consent_variant || "self";
  const consent = await api.get(`/consent?lang=${i18n.lang}&variant=${variant}`);
  const box = $("consent-text");
  box.dataset.version = consent.version;
  // The text is short Markdown: "# " lines are headings, blank lines end paragraphs.
  box.replaceChildren(...consent.text.split(/\n{2,}/).map((part) => (/^#+\s/.test(part)
    ? el("h2", {}, part.replace(/^#+\s*/, "")) : el("p", {}, part))));
}

document.querySelector('[data-testid="consent-accept"]').addEventListener("click", (event) => {
  act(event.currentTarget, async () => {
    await api.post("/me/consent", { version: $("consent-text").dataset.version });
    state.me = await api.get("/me");
    startLive();
    go("check"); // first contact: the zone (asked once), then the connection check (R-DEV)
  });
});

/** After a login or a reload: who am I, consent first (R-CONSENT-1), then the app. */
async function enter() {
  try {
    state.me = await api.get("/me");
  } catch (error) {
    state.me = null;
    if (!api.session) return showLogin();
    say(explain(error));
    return undefined;
  }
  if (state.me.consent_required) return showConsent();
  startLive();
  route();
  return undefined;
}

function showLogin(message = "") {
  state.me = null;
  showFeed(null);
  stopLive();
  show("login");
  say(message);
}

window.addEventListener("telemed:session-expired", () => showLogin(t("errors.session")));

$("logout").addEventListener("click", (event) => {
  act(event.currentTarget, async () => {
    await notes.beforeLogout(); // this device's pushes end with the session
    await api.post("/auth/logout").catch(() => {});
    api.clearSession();
    showLogin();
  });
});

// --- the live connection --------------------------------------------------------------------

function startLive() {
  if (live || !api.session) return;
  live = connectLive(api.session.token);
  live.onState(showLiveState);
  live.on("consultation:state", onConsultationState);
  live.on("consultation:closed", onConsultationClosed);
  live.on("reminder", onReminder);
  live.on("limit:warning", onLimitWarning);
  notes.onLive(live);
}

function stopLive() {
  destroyCall();
  consultation = null;
  live?.close();
  live = null;
}

function showLiveState(liveState, refusal) {
  const line = $("live-state");
  line.dataset.state = liveState;
  if (liveState === "refused" && refusal?.code === "unauthorized") return showLogin(t("errors.session"));
  if (liveState === "refused" && refusal?.code === "consent_required") {
    stopLive();
    return showConsent();
  }
  const text = {
    connecting: t("live.connecting"),
    reconnecting: t("live.reconnecting"),
    refused: refusal?.code === "taken_over" ? t("live.taken_over") : t("live.refused", { message: refusal?.message || "" }),
  }[liveState];
  line.textContent = text || "";
  line.hidden = !text || liveState === "connecting";
  return undefined;
}

function onConsultationState(data) {
  const before = consultation;
  const changed = !before || before.consultation_id !== data.consultation_id || before.state !== data.state;
  if (data.state === "closed") return onConsultationClosed({ consultation_id: data.consultation_id, reason: data.close_reason || "finished" });
  consultation = { ...data };
  if (data.state === "waiting_patient") {
    if (state.screen === "home") renderHome();
    return undefined;
  }
  if (changed || state.screen === "waiting" || state.screen === "call") showConsultation(changed);
  else if (state.screen === "home") renderHome();
  return undefined;
}

function onConsultationClosed(data) {
  if (consultation && data.consultation_id !== consultation.consultation_id) return;
  destroyCall();
  consultation = null;
  closedNote = words().closed[data.reason] || t("call.ended");
  toast(closedNote, { testid: "consultation-closed", passing: false });
  if (state.screen === "waiting" || state.screen === "call" || location.hash === "#consultation") go("home");
}

/** The waiting or call screen for the open consultation, by its state. */
function showConsultation(focus) {
  const c = consultation;
  if (!c || !(WAITING.has(c.state) || IN_CALL.has(c.state))) {
    destroyCall();
    if (state.screen === "waiting" || state.screen === "call") go("home");
    return;
  }
  if (location.hash !== "#consultation") history.replaceState(null, "", "#consultation");
  document.querySelector('[data-screen="waiting"]').dataset.consultationId = c.consultation_id;
  if (WAITING.has(c.state)) {
    destroyCall();
    renderWaiting(c);
    if (state.screen !== "waiting") show("waiting", { focus });
  } else {
    if (state.screen !== "call") show("call", { focus });
    renderCall(c);
  }
}

// --- home and the urgent consultation (R-URG-1) ---------------------------------------------

async function renderHome() {
  $("home-greeting").textContent = state.me ? t("home.hello", { name: state.me.full_name }) : "";
  // R-ROUTE-1: a child's home offers the duty paediatrician, not the therapist.
  const child = state.me?.duty_doctor && state.me.duty_doctor !== "therapist";
  for (const [id, adult, young] of [["home-title", "home.title", "child.duty"], ["home-intro", "home.intro", "child.intro"]]) {
    $(id).dataset.i18n = child ? young : adult;
    $(id).textContent = t($(id).dataset.i18n);
  }
  $("home-title").dataset.duty = child ? "paediatrician" : "therapist";
  const open = $("home-open");
  open.replaceChildren();
  open.hidden = true;
  if (consultation && (WAITING.has(consultation.state) || IN_CALL.has(consultation.state))) {
    open.append(el("p", {}, t("home.open")), el("a", { href: "#consultation", class: "button primary" }, t("home.back")));
    open.hidden = false;
  }
  try {
    const [check, appointments] = await Promise.all([
      api.get("/device-check").catch(() => null),
      api.get("/appointments"),
    ]);
    const hint = $("home-check");
    if (check) {
      const channel = t(`channel.${check.channel}`);
      hint.textContent = check.ok ? t("check.last_ok", { channel }) : t("check.last_fail", { channel });
      hint.dataset.ok = String(check.ok);
    } else {
      hint.textContent = t("check.never");
      delete hint.dataset.ok;
    }
    const upcoming = appointments.items.filter((a) => a.state === "booked" || a.state === "started");
    renderAppointments($("home-appointments"), upcoming.slice(0, 3), "home.none");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) say(explain(error));
  }
}

document.querySelector('[data-testid="start-urgent"]').addEventListener("click", (event) => {
  const channel = document.querySelector('input[name="channel"]:checked').value;
  act(event.currentTarget, () => startConsultation({ channel }));
});

async function startConsultation(payload) {
  if (!live) startLive();
  const ack = await live.request("consultation:start", payload);
  // The state event follows; until then show the queue with what the ack says.
  if (!consultation || consultation.consultation_id !== ack.consultation_id) {
    consultation = { consultation_id: ack.consultation_id, state: ack.state || "waiting_consultant", channel: payload.channel };
  }
  showConsultation(true);
}

function renderWaiting(c) {
  const doctor = c.state === "waiting_doctor";
  $("waiting-title").textContent = doctor ? t("waiting.title_doctor") : t("waiting.title");
  // R-URG-2 (seed 001): online, and do not hang up, while connecting to the consultant or doctor.
  setText($("waiting-who"), doctor ? `${t("waiting.stay_doctor")} ${t("stay.doctor")}` : t("stay.consultant"));
  const seconds = c.estimated_wait_seconds;
  // A live region (aria-live): touched only when the words change, so nothing is re-announced.
  setText($("queue-position"), c.queue_position ? t("waiting.nth", { n: c.queue_position }) : "—");
  setText($("queue-wait"), seconds === undefined || seconds === null ? "—"
    : seconds < 60 ? t("waiting.under_minute") : t("waiting.minutes", { n: Math.round(seconds / 60) }));
  renderDocs(c, $("waiting-docs-slot"));
}

/** R-DOCS-1: a booking that needs documents shows how to add them, waiting or in the call. */
function renderDocs(c, slot) {
  const needed = Boolean(c.documents_required);
  slot.append($("docs-needed"), $("docs-added"));
  $("docs-needed").hidden = !needed;
  $("docs-added").hidden = needed || !c.documents_added;
  if (needed) loadWaitingDocs();
}

async function loadWaitingDocs() {
  const box = $("waiting-docs");
  const legend = box.querySelector("legend");
  const { items } = await api.get("/documents");
  box.replaceChildren(legend, ...items.map((doc) => el("label", {},
    el("input", { type: "checkbox", value: doc.document_id, testid: "doc-choice", checked: true }), ` ${doc.filename}`)));
}

$("waiting-upload").addEventListener("change", (event) => {
  const input = event.currentTarget;
  act(null, async () => {
    await uploadFiles(input.files);
    input.value = "";
    await loadWaitingDocs();
  });
});

document.querySelector('[data-testid="attach-documents"]').addEventListener("click", (event) => {
  act(event.currentTarget, async () => {
    const chosen = [...document.querySelectorAll('#waiting-docs input[type="checkbox"]:checked')].map((box) => box.value);
    if (!chosen.length) throw new ApiError("pick_one", t("waiting.pick_one"));
    for (const id of chosen) await api.post(`/consultations/${consultation.consultation_id}/documents`, { document_id: id });
    consultation = { ...consultation, documents_required: false, documents_added: true }; // R-DOCS-1 satisfied
    if (state.screen === "call") renderDocs(consultation, $("call-docs-slot"));
    else renderWaiting(consultation);
  });
});

document.querySelector('[data-testid="leave-queue"]').addEventListener("click", (event) => {
  if (!consultation) return;
  const id = consultation.consultation_id;
  // Waiting for the doctor, leaving closes the whole consultation: the question says so (R-URG-2).
  const question = consultation.state === "waiting_doctor" ? "waiting.leave_doctor_confirm" : "waiting.leave_confirm";
  confirmThen(event.currentTarget, t(question), () => live.request("consultation:leave", { consultation_id: id }));
});

// --- the call screen (call.js, shared with the console) --------------------------------------

function renderCall(c) {
  const who = c.counterpart;
  document.querySelector('[data-screen="call"]').dataset.consultationId = c.consultation_id;
  // The limit warning belongs to the doctor's leg; back with the consultant it is gone.
  if (c.state !== "with_doctor") $("limit-warning").hidden = true;
  renderDocs(c, $("call-docs-slot"));
  $("call-who").textContent = who ? t("call.with", { role: words().role[who.role] || who.role, name: who.name || "" }) : "";
  // One mounted call per consultation and counterpart: a transfer brings a new peer.
  const key = `${c.consultation_id}:${who?.role || ""}:${who?.name || ""}`;
  if (call?.key === key) return;
  destroyCall();
  mountCallFor(c, key);
}

async function mountCallFor(c, key) {
  const ticket = ++callMounting;
  const root = $("call-root");
  let mountCall = null;
  try {
    ({ mountCall } = await import("/static/js/call.js"));
  } catch {
    mountCall = null;
  }
  if (ticket !== callMounting) return;
  root.replaceChildren();
  const options = {
    live,
    api,
    t,
    lang: i18n.lang,
    consultationId: c.consultation_id,
    polite: true,
    role: "patient",
    channel: c.channel,
    iceServers: c.ice_servers || live?.iceServers || [],
    legId: c.leg_id || null,
    onHangup: () => askHangup(c.consultation_id),
  };
  const handle = mountCall ? mountCall(root, options) : fallbackCall(root, options);
  call = { id: c.consultation_id, key, handle };
}

/** R-URG-2: the hang-up asks first; during the doctor's leg it returns the patient to the
 * consultant (R-URG-5), the server deciding by the state (POST /consultations/{id}/hang-up). */
function askHangup(consultationId) {
  const holder = $("hangup-confirm");
  const doctor = consultation?.state === "with_doctor";
  const question = t(doctor ? "hangup.doctor" : "hangup.consultant");
  const yes = el("button", { type: "button", class: "primary", testid: "confirm-yes" }, t("yes"));
  const no = el("button", { type: "button", testid: "confirm-no" }, t("no"));
  const box = el("div", { class: "confirm", role: "group", "aria-label": question, testid: "hangup-confirm" }, el("p", {}, question), yes, no);
  const back = () => document.querySelector('#call-root [data-testid="hangup"]')?.focus();
  no.addEventListener("click", () => { box.remove(); back(); });
  yes.addEventListener("click", () => act(yes, async () => {
    const after = await api.post(`/consultations/${consultationId}/hang-up`);
    box.remove();
    if (after.state === "with_consultant" || after.state === "waiting_consultant") toast(t("hangup.back"), { testid: "back-to-consultant" });
  }));
  holder.replaceChildren(box);
  no.focus();
}

// R-SECOND: ask for a second opinion in the consultation the patient is in.
$("call-opinion").addEventListener("click", () => {
  state.opinionFor = consultation?.consultation_id || null;
  go("opinions");
});

// R-FALLBACK-1: when the call cannot connect (or the patient is offline), the hotline shows.
const FAILED_CALL = new Set(["failed", "offline", "no_devices"]);
new MutationObserver(() => {
  const line = $("call-root").querySelector('[data-testid="call-state"]');
  $("call-hotline").hidden = !FAILED_CALL.has(line?.dataset.state);
}).observe($("call-root"), { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });

function onLimitWarning(data) {
  if (data.consultation_id !== consultation?.consultation_id) return;
  const box = $("limit-warning");
  box.dataset.endsAt = data.ends_at;
  box.textContent = t("limit.warning", { time: whenZ(data.ends_at, { timeStyle: "short" }) });
  box.hidden = false;
}

function fallbackCall(root, { consultationId, onHangup }) {
  // Used only while call.js is missing: the state line and a hang-up button.
  root.append(
    el("p", { testid: "call-state", role: "status" }, "connecting"),
    el("button", { type: "button", testid: "hangup", onclick: () => onHangup(consultationId) }, t("call.hangup")),
  );
  return { destroy: () => root.replaceChildren() };
}

function destroyCall() {
  callMounting++;
  $("hangup-confirm").replaceChildren();
  if (!call) return;
  try {
    call.handle?.destroy();
  } catch (error) {
    console.error(error);
  }
  call = null;
}

// --- reminders (R-REMIND-1) -----------------------------------------------------------------

function onReminder(data) {
  const join = el("button", { type: "button", class: "primary", testid: "reminder-join" }, t("reminder.join"));
  join.addEventListener("click", () => act(join, async () => {
    const appointment = await findAppointment(data.appointment_id);
    await startConsultation({ channel: appointment?.channel || "video", appointment_id: data.appointment_id });
    box.remove();
  }));
  const box = toast(t("reminder.text", { time: whenZ(data.starts_at, { timeStyle: "short" }) }), { testid: "reminder", actions: [join], sticky: true });
  box.dataset.appointmentId = data.appointment_id;
  if (state.screen === "home") renderHome();
}

async function findAppointment(id) {
  const { items } = await api.get("/appointments");
  return items.find((a) => a.appointment_id === id);
}

// --- booking (R-SCH-2, R-CANCEL-1) ------------------------------------------------------------

async function loadBooking() {
  await Promise.all([loadSlots(), loadAppointments()]);
}

// A booking made on the slots screen (booking.js) shows in "my appointments" at once.
window.addEventListener("telemed:booked", () => {
  loadAppointments();
  notes.offerPush(); // a sensible moment to ask for the reminder on the phone
});

async function loadAppointments() {
  try {
    const { items } = await api.get("/appointments");
    items.sort((a, b) => a.starts_at.localeCompare(b.starts_at));
    renderAppointments($("appointments"), items, "booking.none_mine");
  } catch (error) {
    say(explain(error));
  }
}

function renderAppointments(list, items, emptyKey) {
  if (!items.length) return list.replaceChildren(el("li", { class: "empty" }, t(emptyKey)));
  const stateWords = words().state;
  list.replaceChildren(...items.map((a) => {
    const open = a.state === "booked";
    const item = el("li", { testid: "appointment", "data-appointment-id": a.appointment_id, "data-state": a.state },
      el("strong", {}, whenZ(a.starts_at)),
      el("span", {}, ` · ${words().kind[a.kind] || a.kind} · ${t(`channel.${a.channel}`)} · ${stateWords[a.state] || a.state}`),
      a.requires_documents ? el("p", { class: "hint", testid: "appointment-docs" }, t("booking.docs")) : null);
    if (open) {
      const actions = el("div", { class: "actions" },
        el("button", { type: "button", class: "primary", testid: "join-appointment", onclick: (event) => act(event.currentTarget,
          () => startConsultation({ channel: a.channel, appointment_id: a.appointment_id })) }, t("booking.join")),
        el("button", { type: "button", testid: "cancel-appointment", onclick: (event) => {
          confirmThen(event.currentTarget, t("booking.cancel_confirm"), async () => {
            await api.post(`/appointments/${a.appointment_id}/cancel`);
            toast(t("booking.cancelled"), { testid: "appointment-cancelled" });
            if (state.screen === "booking") await loadBooking();
            else renderHome();
          });
        } }, t("booking.cancel")));
      item.append(actions);
    }
    return item;
  }));
  return undefined;
}

// --- profile: the consent (R-CONSENT-1); the time zone is in zones.js ---------------------------

// R-CONSENT-1: the consent can be withdrawn; everything else closes until it is given again.
document.querySelector('[data-testid="consent-withdraw"]').addEventListener("click", (event) => {
  confirmThen(event.currentTarget, t("profile.withdraw_confirm"), async () => {
    await api.delete("/me/consent");
    stopLive();
    showFeed(null);
    state.me = await api.get("/me");
    history.replaceState(null, "", location.pathname);
    await showConsent();
  });
});

// --- language and start-up ------------------------------------------------------------------

for (const button of document.querySelectorAll("[data-lang]")) {
  button.addEventListener("click", () => i18n.setLang(button.dataset.lang));
}

function markLanguage() {
  for (const button of document.querySelectorAll("[data-lang]")) button.setAttribute("aria-pressed", String(button.dataset.lang === i18n.lang));
}

i18n.onChange(() => {
  markLanguage();
  renderHotlines();
  // Texts built from data: draw the current screen again.
  if (state.screen === "waiting" && consultation) renderWaiting(consultation);
  else if (state.screen === "call" && consultation) renderCall(consultation);
  else if (state.screen === "conclusion" || state.screen === "timezone") route();
  else if (state.screen && state.screen !== "login" && state.screen !== "consent" && state.screen !== "check") show(state.screen, { focus: false });
  if (live) showLiveState(live.state, live.refusal);
});

/** R-FALLBACK-1: every hotline slot (login, check, call) says the number of clinic.hotline. */
function renderHotlines() {
  for (const slot of document.querySelectorAll("[data-hotline]")) slot.replaceChildren(hotlineBox(slot.dataset.hotline));
}

window.addEventListener("hashchange", route);
// The menu item of the screen shown reloads it (no hashchange then): fresh data on demand.
for (const link of document.querySelectorAll("#nav a")) {
  link.addEventListener("click", () => { if (link.getAttribute("href") === location.hash) route(); });
}
markLanguage();
// The public config (the hotline) first: a patient who cannot log in still sees whom to call.
api.get("/config").then((config) => { Object.assign(state.config, config); }).catch(() => {}).finally(() => {
  renderHotlines();
  if (api.session) enter();
  else showLogin();
});
