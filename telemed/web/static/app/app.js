// The patient app at /: login, consent, profile, the connection check, the urgent
// consultation (queue, call), booking, the medical card, the calendar and "My records".
// One screen (<section data-screen>) is visible at a time; the server's
// consultation:state decides between the waiting and call screens, so a reload comes back.

import { ApiError, createApi } from "/static/js/api.js";
import { connectLive } from "/static/js/live.js";
import { setupI18n } from "/static/js/i18n.js";
import { checkClient, levelMeter, runCheck } from "/static/js/devicecheck.js";
import { TEXTS } from "./texts.js";
import { setupNotifications } from "./notifications.js";

const api = createApi({ storageKey: "telemed.patient" });
const i18n = setupI18n(TEXTS);
const { t } = i18n;
const notes = setupNotifications({ api, i18n }); // the list, pushes, the service worker
const $ = (id) => document.getElementById(id);
const NAV_SCREENS = ["home", "booking", "card", "calendar", "records", "profile", "check", "notifications"];
const WAITING = new Set(["waiting_consultant", "waiting_doctor"]);
const IN_CALL = new Set(["with_consultant", "with_doctor"]);

let me = null;
let live = null;
let screen = null;
let consultation = null; // the open consultation as the server last described it
let call = null; // {id, key, handle}
let callMounting = 0;
let chosenSlot = null;
let closedNote = null;

// --- small helpers --------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
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

function zone() {
  return me?.timezone || Intl.DateTimeFormat().resolvedOptions().timeZone;
}

function when(iso, options = { dateStyle: "medium", timeStyle: "short" }) {
  // R-CAL-1: times are shown in the patient's own time zone, not the browser's.
  return new Intl.DateTimeFormat(i18n.lang, { ...options, timeZone: zone() }).format(new Date(iso));
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function say(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function explain(error) {
  if (error instanceof ApiError || error?.code) {
    const known = TEXTS[i18n.lang].errors[error.code];
    return known || error.message || error.code;
  }
  return String(error?.message || error);
}

/** Runs an action from a button: disables it meanwhile and shows any error in the alert. */
async function act(button, fn) {
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

function toast(text, { testid = "toast", actions = [], sticky = false, passing = true } = {}) {
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
function confirmThen(button, question, fn) {
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

// --- screens --------------------------------------------------------------------------------

function show(name, { focus = true } = {}) {
  if (name !== screen) {
    say("");
    for (const old of document.querySelectorAll('.toast[data-passing="true"]')) old.remove();
  }
  screen = name;
  for (const section of document.querySelectorAll("[data-screen]")) section.hidden = section.dataset.screen !== name;
  const loggedIn = Boolean(me && !me.consent_required);
  $("nav").hidden = !loggedIn || name === "who";
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
  notes.onScreen(name);
}

function route() {
  if (!me || me.consent_required) return;
  const name = location.hash.slice(1).split("/")[0]; // #booking/ID: a pushed appointment
  if (name === "consultation" || (!name && consultation)) return showConsultation(true);
  show(NAV_SCREENS.includes(name) ? name : "home");
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
  $("acting").hidden = !several || screen === "login";
  if (!several) return;
  // On the choosing screen itself "Change" would lead nowhere.
  $("acting").querySelector('[data-testid="switch-patient"]').hidden = screen === "who";
  const current = people().find((p) => p.patient_id === api.session.user_id);
  $("acting-name").textContent = me?.full_name || current?.full_name || "";
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
    me = null;
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
  const consent = await api.get("/consent");
  const box = $("consent-text");
  box.dataset.version = consent.version;
  // The text is short Markdown: "# " lines are headings, blank lines end paragraphs.
  box.replaceChildren(...consent.text.split(/\n{2,}/).map((part) => (/^#+\s/.test(part)
    ? el("h2", {}, part.replace(/^#+\s*/, "")) : el("p", {}, part))));
}

document.querySelector('[data-testid="consent-accept"]').addEventListener("click", (event) => {
  act(event.currentTarget, async () => {
    await api.post("/me/consent", { version: $("consent-text").dataset.version });
    me = await api.get("/me");
    startLive();
    go("check"); // first contact: the connection check before anything else (R-DEV)
  });
});

/** After a login or a reload: who am I, consent first (R-CONSENT-1), then the app. */
async function enter() {
  try {
    me = await api.get("/me");
  } catch (error) {
    me = null;
    if (!api.session) return showLogin();
    say(explain(error));
    return undefined;
  }
  if (me.consent_required) return showConsent();
  startLive();
  route();
  return undefined;
}

function showLogin(message = "") {
  me = null;
  showFeed(null);
  stopLive();
  show("login");
  say(message);
}

window.addEventListener("telemed:session-expired", () => showLogin(t("errors.session")));

$("logout").addEventListener("click", (event) => {
  act(event.currentTarget, async () => {
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
  notes.onLive(live);
}

function stopLive() {
  destroyCall();
  consultation = null;
  live?.close();
  live = null;
}

function showLiveState(state, refusal) {
  const line = $("live-state");
  line.dataset.state = state;
  if (state === "refused" && refusal?.code === "unauthorized") return showLogin(t("errors.session"));
  if (state === "refused" && refusal?.code === "consent_required") {
    stopLive();
    return showConsent();
  }
  const text = {
    connecting: t("live.connecting"),
    reconnecting: t("live.reconnecting"),
    refused: refusal?.code === "taken_over" ? t("live.taken_over") : t("live.refused", { message: refusal?.message || "" }),
  }[state];
  line.textContent = text || "";
  line.hidden = !text || state === "connecting";
  return undefined;
}

function onConsultationState(data) {
  const before = consultation;
  const changed = !before || before.consultation_id !== data.consultation_id || before.state !== data.state;
  if (data.state === "closed") return onConsultationClosed({ consultation_id: data.consultation_id, reason: data.close_reason || "finished" });
  consultation = { ...data };
  if (data.state === "waiting_patient") {
    if (screen === "home") renderHome();
    return undefined;
  }
  if (changed || screen === "waiting" || screen === "call") showConsultation(changed);
  else if (screen === "home") renderHome();
  return undefined;
}

function onConsultationClosed(data) {
  if (consultation && data.consultation_id !== consultation.consultation_id) return;
  destroyCall();
  consultation = null;
  closedNote = TEXTS[i18n.lang].closed[data.reason] || t("call.ended");
  toast(closedNote, { testid: "consultation-closed", passing: false });
  if (screen === "waiting" || screen === "call" || location.hash === "#consultation") go("home");
}

/** The waiting or call screen for the open consultation, by its state. */
function showConsultation(focus) {
  const c = consultation;
  if (!c || !(WAITING.has(c.state) || IN_CALL.has(c.state))) {
    destroyCall();
    if (screen === "waiting" || screen === "call") go("home");
    return;
  }
  if (location.hash !== "#consultation") history.replaceState(null, "", "#consultation");
  document.querySelector('[data-screen="waiting"]').dataset.consultationId = c.consultation_id;
  if (WAITING.has(c.state)) {
    destroyCall();
    renderWaiting(c);
    if (screen !== "waiting") show("waiting", { focus });
  } else {
    if (screen !== "call") show("call", { focus });
    renderCall(c);
  }
}

// --- home and the urgent consultation (R-URG-1) ---------------------------------------------

async function renderHome() {
  $("home-greeting").textContent = me ? t("home.hello", { name: me.full_name }) : "";
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
  $("waiting-who").textContent = doctor ? t("waiting.stay_doctor") : t("waiting.stay");
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
    if (screen === "call") renderDocs(consultation, $("call-docs-slot"));
    else renderWaiting(consultation);
  });
});

document.querySelector('[data-testid="leave-queue"]').addEventListener("click", (event) => {
  if (!consultation) return;
  const id = consultation.consultation_id;
  confirmThen(event.currentTarget, t("waiting.leave_confirm"), () => live.request("consultation:leave", { consultation_id: id }));
});

// --- the call screen (call.js, shared with the console) --------------------------------------

function renderCall(c) {
  const who = c.counterpart;
  document.querySelector('[data-screen="call"]').dataset.consultationId = c.consultation_id;
  renderDocs(c, $("call-docs-slot"));
  $("call-who").textContent = who ? t("call.with", { role: TEXTS[i18n.lang].role[who.role] || who.role, name: who.name || "" }) : "";
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
    onHangup: () => live.request("consultation:leave", { consultation_id: c.consultation_id }),
  };
  const handle = mountCall ? mountCall(root, options) : fallbackCall(root, options);
  call = { id: c.consultation_id, key, handle };
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
  const box = toast(t("reminder.text", { time: when(data.starts_at, { timeStyle: "short" }) }), { testid: "reminder", actions: [join], sticky: true });
  box.dataset.appointmentId = data.appointment_id;
  if (screen === "home") renderHome();
}

async function findAppointment(id) {
  const { items } = await api.get("/appointments");
  return items.find((a) => a.appointment_id === id);
}

// --- booking (R-SCH 1, R-CANCEL-1) ------------------------------------------------------------

for (const input of document.querySelectorAll('input[name="book-role"]')) input.addEventListener("change", loadSlots);

async function loadBooking() {
  await Promise.all([loadSlots(), loadAppointments()]);
}

async function loadSlots() {
  chosenSlot = null;
  $("slot-chosen").textContent = "";
  document.querySelector('[data-testid="book-confirm"]').disabled = true;
  const role = document.querySelector('input[name="book-role"]:checked').value;
  const box = $("slots");
  try {
    const { slots } = await api.get(`/slots?role=${role}`);
    const byDay = new Map();
    for (const slot of slots) {
      const day = when(slot.starts_at, { weekday: "short", day: "numeric", month: "short" });
      if (!byDay.has(day)) byDay.set(day, []);
      byDay.get(day).push(slot);
    }
    const days = [...byDay].slice(0, 14);
    if (!days.length) return box.replaceChildren(el("p", {}, t("booking.none")));
    // One day at a time: a row of days, then that day's free times.
    const times = el("div", { class: "times" });
    const pickDay = (index) => {
      for (const [i, button] of dayButtons.entries()) button.setAttribute("aria-pressed", String(i === index));
      times.replaceChildren(...days[index][1].map((slot) => el("button", {
        type: "button",
        testid: "slot",
        "data-slot-id": slot.slot_id,
        "aria-pressed": String(chosenSlot?.slot_id === slot.slot_id),
        "aria-label": `${when(slot.starts_at)}, ${slot.doctor_name}`,
        onclick: (event) => chooseSlot(slot, event.currentTarget),
      }, el("span", { class: "time" }, when(slot.starts_at, { timeStyle: "short" })), el("span", { class: "doc" }, slot.doctor_name))));
    };
    const dayButtons = days.map(([day], index) => el("button", { type: "button", testid: "slot-day", onclick: () => pickDay(index) }, day));
    box.replaceChildren(el("div", { class: "days", role: "group", "aria-label": t("booking.day") }, ...dayButtons), times);
    pickDay(0);
  } catch (error) {
    say(explain(error));
  }
  return undefined;
}

function chooseSlot(slot, button) {
  chosenSlot = slot;
  for (const other of document.querySelectorAll('[data-testid="slot"]')) other.setAttribute("aria-pressed", String(other === button));
  $("slot-chosen").textContent = t("booking.chosen", { time: when(slot.starts_at), doctor: slot.doctor_name });
  document.querySelector('[data-testid="book-confirm"]').disabled = false;
}

document.querySelector('[data-testid="book-confirm"]').addEventListener("click", (event) => {
  if (!chosenSlot) return;
  act(event.currentTarget, async () => {
    const channel = document.querySelector('input[name="book-channel"]:checked').value;
    const made = await api.post("/appointments", { slot_id: chosenSlot.slot_id, channel });
    toast(t("booking.booked", { time: when(made.starts_at) }), { testid: "booked" });
    notes.offerPush(); // a sensible moment to ask for the reminder on the phone
    await loadBooking();
  });
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
  const state = TEXTS[i18n.lang].state;
  list.replaceChildren(...items.map((a) => {
    const open = a.state === "booked";
    const item = el("li", { testid: "appointment", "data-appointment-id": a.appointment_id, "data-state": a.state },
      el("strong", {}, when(a.starts_at)),
      el("span", {}, ` · ${TEXTS[i18n.lang].kind[a.kind] || a.kind} · ${t(`channel.${a.channel}`)} · ${state[a.state] || a.state}`),
      a.requires_documents ? el("p", { class: "hint", testid: "appointment-docs" }, t("booking.docs")) : null);
    if (open) {
      const actions = el("div", { class: "actions" },
        el("button", { type: "button", class: "primary", testid: "join-appointment", onclick: (event) => act(event.currentTarget,
          () => startConsultation({ channel: a.channel, appointment_id: a.appointment_id })) }, t("booking.join")),
        el("button", { type: "button", testid: "cancel-appointment", onclick: (event) => {
          confirmThen(event.currentTarget, t("booking.cancel_confirm"), async () => {
            await api.post(`/appointments/${a.appointment_id}/cancel`);
            toast(t("booking.cancelled"), { testid: "appointment-cancelled" });
            if (screen === "booking") await loadBooking();
            else renderHome();
          });
        } }, t("booking.cancel")));
      item.append(actions);
    }
    return item;
  }));
  return undefined;
}

// --- the medical card (R-DOCS-1) --------------------------------------------------------------

async function uploadFiles(files) {
  for (const file of files) {
    $("card-status").textContent = t("card.uploading");
    const form = new FormData();
    form.append("file", file, file.name);
    await api.upload("/documents", form);
    $("card-status").textContent = t("card.uploaded", { name: file.name });
  }
}

$("doc-upload").addEventListener("change", (event) => {
  const input = event.currentTarget;
  act(null, async () => {
    try {
      await uploadFiles(input.files);
    } finally {
      input.value = "";
    }
    await loadCard();
  });
});

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

async function loadCard() {
  try {
    const { items } = await api.get("/documents");
    const list = $("documents");
    if (!items.length) return list.replaceChildren(el("li", { class: "empty" }, t("card.none")));
    list.replaceChildren(...items.map((doc) => el("li", { testid: "document", "data-document-id": doc.document_id },
      el("strong", {}, doc.filename), el("span", {}, ` · ${size(doc.size)} · ${when(doc.created_at)}`))));
  } catch (error) {
    say(explain(error));
  }
  return undefined;
}

// --- the calendar (R-CONCL-1, R-CAL-1) and My records ------------------------------------------

function conclusionBlock(summary) {
  return el("div", { class: "conclusion", testid: "conclusion" },
    el("p", {}, el("strong", {}, `${t("calendar.conclusion")}: `), summary.text),
    summary.recommendations ? el("p", {}, el("strong", {}, `${t("calendar.recommendations")}: `), summary.recommendations) : null,
    summary.doctor_name ? el("p", { class: "hint" }, `${t("calendar.doctor")}: ${summary.doctor_name}`) : null);
}

/** The server's title, without the "cancelled" it starts with: the status mark says it once. */
function eventTitle(event) {
  return event.status === "cancelled" ? event.title.replace(/^Отменено\.\s*/u, "") : event.title;
}

async function loadCalendar() {
  try {
    const calendar = await api.get("/calendar");
    $("calendar-zone").textContent = t("calendar.zone", { zone: calendar.timezone });
    const list = $("calendar");
    const events = [...calendar.events].sort((a, b) => b.starts_at.localeCompare(a.starts_at));
    if (!events.length) return list.replaceChildren(el("li", { class: "empty" }, t("calendar.none")));
    const state = TEXTS[i18n.lang].state;
    list.replaceChildren(...events.map((event) => el("li", { testid: "calendar-event", "data-type": event.type, "data-status": event.status },
      el("strong", {}, `${when(event.starts_at)} – ${when(event.ends_at, { timeStyle: "short" })}`),
      el("p", {}, `${eventTitle(event)} · `, el("span", { class: `status status-${event.status}`, testid: "event-status" }, state[event.status] || event.status)),
      event.conclusion ? conclusionBlock(event.conclusion) : null)));
  } catch (error) {
    say(explain(error));
  }
  return undefined;
}

// The secret iCalendar feed (R-CAL-1): the server keeps only its hash, so the link is shown
// once, right after it is made; a new one replaces it, and it can be turned off.

function showFeed(feed) {
  $("feed-box").hidden = !feed;
  $("feed-url").value = feed?.url || "";
  if (feed) $("feed-webcal").href = feed.webcal_url;
  const create = document.querySelector('[data-testid="feed-create"]');
  create.dataset.i18n = feed ? "feed.rotate" : "feed.create";
  create.textContent = t(create.dataset.i18n);
}

document.querySelector('[data-testid="feed-create"]').addEventListener("click", (event) => {
  act(event.currentTarget, async () => {
    showFeed(await api.post("/calendar/feed"));
    $("feed-status").textContent = t("feed.created");
    $("feed-url").focus();
    $("feed-url").select();
  });
});

document.querySelector('[data-testid="feed-copy"]').addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("feed-url").value);
    $("feed-status").textContent = t("feed.copied");
  } catch {
    $("feed-url").select();
    $("feed-status").textContent = t("feed.copy_failed");
  }
});

document.querySelector('[data-testid="feed-revoke"]').addEventListener("click", (event) => {
  confirmThen(event.currentTarget, t("feed.revoke_confirm"), async () => {
    await api.delete("/calendar/feed");
    showFeed(null);
    $("feed-status").textContent = t("feed.revoked");
  });
});

async function loadRecords() {
  try {
    const { items } = await api.get("/records");
    const list = $("records");
    if (!items.length) return list.replaceChildren(el("li", { class: "empty" }, t("records.none")));
    const state = TEXTS[i18n.lang].state;
    list.replaceChildren(...items.map((record) => {
      const item = el("li", { testid: "record", "data-consultation-id": record.consultation_id },
        el("strong", {}, when(record.created_at)),
        el("p", {}, `${TEXTS[i18n.lang].kind[record.kind] || record.kind} · ${t(`channel.${record.channel}`)} · ${state[record.close_reason] || state[record.state] || record.state}`));
      if (record.conclusion_id) {
        const button = el("button", { type: "button", testid: "record-conclusion" }, t("records.show"));
        button.addEventListener("click", () => act(button, async () => {
          const conclusion = await api.get(`/conclusions/${record.conclusion_id}`);
          button.replaceWith(conclusionBlock(conclusion));
        }));
        item.append(button);
      } else {
        item.append(el("p", { class: "hint" }, t("records.no_conclusion")));
      }
      return item;
    }));
  } catch (error) {
    say(explain(error));
  }
  return undefined;
}

// --- profile (R-CAL-1) ------------------------------------------------------------------------

const RUSSIAN_ZONES = ["Europe/Kaliningrad", "Europe/Moscow", "Europe/Samara", "Asia/Yekaterinburg", "Asia/Omsk",
  "Asia/Novosibirsk", "Asia/Krasnoyarsk", "Asia/Irkutsk", "Asia/Yakutsk", "Asia/Vladivostok", "Asia/Magadan", "Asia/Kamchatka"];

function renderProfile() {
  if (!me) return;
  $("profile-name").textContent = me.full_name;
  $("profile-phone").textContent = me.phone || "—";
  $("profile-birth").textContent = me.birth_date
    ? new Intl.DateTimeFormat(i18n.lang, { dateStyle: "long", timeZone: "UTC" }).format(new Date(me.birth_date)) : "—";
  $("profile-saved").textContent = "";
  $("profile-consent").textContent = me.consent_accepted_at ? t("profile.consent_given", {
    date: new Intl.DateTimeFormat(i18n.lang, { dateStyle: "long", timeZone: zone() }).format(new Date(me.consent_accepted_at)),
    version: me.consent_version || "",
  }) : "";
  const select = $("timezone");
  const all = Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : RUSSIAN_ZONES;
  const others = all.filter((z) => !RUSSIAN_ZONES.includes(z));
  if (me.timezone && !all.includes(me.timezone) && !RUSSIAN_ZONES.includes(me.timezone)) others.unshift(me.timezone);
  const option = (z) => el("option", { value: z, selected: z === me.timezone }, z.replace(/_/g, " "));
  select.replaceChildren(
    el("optgroup", { label: "Россия / Russia" }, ...RUSSIAN_ZONES.map(option)),
    el("optgroup", { label: "—" }, ...others.map(option)));
  select.value = me.timezone || "Europe/Moscow";
}

$("profile-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(event.submitter, async () => {
    me = await api.patch("/me", { timezone: $("timezone").value });
    $("profile-saved").textContent = t("profile.saved");
  });
});

// R-CONSENT-1: the consent can be withdrawn; everything else closes until it is given again.
document.querySelector('[data-testid="consent-withdraw"]').addEventListener("click", (event) => {
  confirmThen(event.currentTarget, t("profile.withdraw_confirm"), async () => {
    await api.delete("/me/consent");
    stopLive();
    showFeed(null);
    me = await api.get("/me");
    history.replaceState(null, "", location.pathname);
    await showConsent();
  });
});

// --- the connection check (R-DEV), shared logic in devicecheck.js ------------------------------

let checking = false;
let checkCall = null;
let stopLevel = () => {};

function prepareCheck() {
  const chosen = document.querySelector('input[name="channel"]:checked')?.value || "video";
  if (!checking) for (const input of document.querySelectorAll('input[name="check-channel"]')) input.checked = input.value === chosen;
}

function checkPreview(stream) {
  stopLevel();
  $("check-preview").closest(".preview").hidden = !stream;
  $("check-preview").srcObject = stream;
  stopLevel = stream ? levelMeter(stream, (level) => { $("check-level").value = level; }) : () => {};
}

function renderVerdict(verdict) {
  const names = TEXTS[i18n.lang].check.names;
  $("check-list").replaceChildren(...verdict.checks.map((check) => el("li", { "data-check": check.name, "data-ok": String(check.ok) },
    el("strong", {}, `${names[check.name] || check.name}: `),
    el("span", { class: "mark" }, check.ok ? `✓ ${t("check.pass")}` : `✗ ${t("check.failed")}`),
    el("div", {}, `${t("check.actual")}: ${check.actual}. ${t("check.required")}: ${check.required}.`),
    check.advice ? el("p", { class: "advice" }, check.advice) : null)));
  const result = $("check-result");
  result.dataset.verdict = verdict.ok ? "ok" : "fail";
  result.hidden = false;
  $("check-verdict").textContent = verdict.ok ? t("check.ok") : t("check.fail");
  $("check-verdict").focus();
}

document.querySelector('[data-testid="check-run"]').addEventListener("click", async (event) => {
  if (checking) return;
  const button = event.currentTarget;
  const channel = document.querySelector('input[name="check-channel"]:checked').value;
  checking = true;
  button.disabled = true;
  $("check-result").hidden = true;
  delete $("check-result").dataset.verdict;
  say("");
  try {
    const { verdict } = await runCheck(checkClient(api.session.token), {
      channel,
      lang: i18n.lang,
      say: (key, vars) => { $("check-status").textContent = t(`check.${key}`, vars); },
      onStream: checkPreview,
      onCall: (id) => { checkCall = id; },
    });
    $("check-status").textContent = "";
    renderVerdict(verdict);
    // The home screen starts with the channel just checked.
    for (const input of document.querySelectorAll('input[name="channel"]')) input.checked = input.value === channel;
  } catch (error) {
    $("check-status").textContent = t("check.error", { message: error.message });
  } finally {
    checking = false;
    button.disabled = false;
    button.dataset.i18n = "check.again";
    button.textContent = t("check.again");
  }
});

addEventListener("pagehide", () => {
  if (checkCall && api.session) checkClient(api.session.token).forget(checkCall);
});

document.querySelector('[data-testid="check-continue"]').addEventListener("click", () => go("home"));

// --- language and start-up ------------------------------------------------------------------

for (const button of document.querySelectorAll("[data-lang]")) {
  button.addEventListener("click", () => i18n.setLang(button.dataset.lang));
}

function markLanguage() {
  for (const button of document.querySelectorAll("[data-lang]")) button.setAttribute("aria-pressed", String(button.dataset.lang === i18n.lang));
}

i18n.onChange(() => {
  markLanguage();
  // Texts built from data: draw the current screen again.
  if (screen === "waiting" && consultation) renderWaiting(consultation);
  else if (screen === "call" && consultation) renderCall(consultation);
  else if (screen && screen !== "login" && screen !== "consent" && screen !== "check") show(screen, { focus: false });
  if (live) showLiveState(live.state, live.refusal);
});

window.addEventListener("hashchange", route);
markLanguage();
if (api.session) enter();
else showLogin();
