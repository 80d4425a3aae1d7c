// The queue panel: the live list (queue_model.js applies snapshots and deltas), the arrival
// alert with its tone, accept and accept-next; booked patients show their appointment.

import { el, mmss } from "/static/js/dom.js";
import { appointmentFor, loadDay } from "./day.js";
import { $, fire, isConsultant, isDoctor, localTime, on, s, showError, t } from "./state.js";
import { createQueue } from "./queue_model.js";

const TARGET_SECONDS = 5 * 60; // R-URG-2: the consultant's start target, shown as "over 5 min"

let queue = createQueue();
let hadSnapshot = false;
let audio = null;
const askedDay = new Set(); // booked items the day's list was re-read for (v1 items carry no appointment)

/** Start watching (after every connect: the ack is the re-sync, QUEUE_DELTAS). The day's
 * list is read again too: an appointment cancelled between the page's first read and the
 * watch (or while the socket was down) told only the consoles already watching. */
export async function watch() {
  try {
    const ack = await s.live.request("queue:watch", {});
    snapshot(ack.items || [], ack.server_time);
  } catch (err) {
    showError($("queue-error"), err);
  }
  await loadDay();
}

export function bindQueue(live) {
  const me = s.me.user_id || s.me.id;
  queue = createQueue({
    // A doctor sees patients named for no doctor or for them (the server filters too).
    mine: (item) => !isDoctor() || !item.target_doctor_id || item.target_doctor_id === me,
  });
  hadSnapshot = false;
  live.on("queue:update", (p) => snapshot(p.items || [], p.server_time));
  live.on("queue:joined", (p) => {
    const wasEmpty = queue.size === 0;
    remember(p.item);
    if (queue.join(p.item, p.server_time) && wasEmpty) arrivalAlert();
    renderQueue();
  });
  live.on("queue:changed", (p) => {
    remember(p.item);
    queue.change(p.item, p.server_time);
    renderQueue();
  });
  // A no-show closes the consultation: its item leaves even before a v2 server's queue:left.
  live.on("appointment:no_show", (p) => {
    if (p.consultation_id && queue.leave(p.consultation_id)) renderQueue();
  });
  live.on("queue:left", (p) => {
    const item = queue.leave(p.consultation_id, p.server_time);
    if (item && ["no_show", "cancelled"].includes(p.reason)) fire("moved", { ...item, reason: p.reason });
    if (!queue.size) $("queue-alert").hidden = true;
    renderQueue();
  });
}

function remember(item) {
  s.known.set(item.consultation_id, {
    ...(s.known.get(item.consultation_id) || {}),
    patient_id: item.patient_id,
    patient_name: item.patient_name,
    age: item.age,
    channel: item.channel,
    kind: item.kind,
    appointment: item.appointment || s.known.get(item.consultation_id)?.appointment || null,
  });
}

function snapshot(items, serverTime) {
  const wasEmpty = queue.size === 0;
  for (const item of items) remember(item);
  queue.replace(items, serverTime);
  if (queue.offset != null) s.serverOffset = queue.offset;
  if (hadSnapshot && wasEmpty && queue.size) arrivalAlert();
  if (!queue.size) $("queue-alert").hidden = true;
  hadSnapshot = true;
  renderQueue();
}

function arrivalAlert() {
  $("queue-alert").hidden = false;
  document.title = `● ${t("queue.alert")}`;
  beep();
}

export function dismissAlert() {
  $("queue-alert").hidden = true;
  document.title = t("title");
}

function pastTarget(item, waited) {
  return Boolean(item.past_target) || (isConsultant() && waited > TARGET_SECONDS);
}

function checkLine(check) {
  if (!check) return { text: t("queue.check_none"), cls: "q-check none" };
  let text = check.ok ? t("queue.check_ok") : t("queue.check_failed", { failing: (check.failing || []).join(", ") });
  if (check.camera_failed) text += ` · ${t("queue.camera_failed")}`;
  return { text, cls: `q-check ${check.ok ? "ok" : "bad"}` };
}

/** A booked patient whose item has no appointment (a v1 server): the day's list has it once
 * the consultation exists; read it again, once per consultation. */
function lookUpBookings(items) {
  const missing = items.filter((i) => i.kind !== "urgent" && !i.appointment && !appointmentFor(i.consultation_id) && !askedDay.has(i.consultation_id));
  if (!missing.length) return;
  for (const i of missing) askedDay.add(i.consultation_id);
  loadDay().then(renderQueue);
}

export function renderQueue() {
  const list = $("queue");
  const items = queue.list();
  lookUpBookings(items);
  $("queue-count").textContent = String(items.length);
  $("queue-empty").hidden = items.length > 0;
  $("accept-next").disabled = items.length === 0 || Boolean(s.current);
  const focused = document.activeElement?.dataset?.consultationId;
  list.replaceChildren(...items.map(queueItem));
  if (focused) list.querySelector(`button[data-consultation-id="${focused}"]`)?.focus();
}

function queueItem(item) {
  const waited = queue.waited(item);
  const late = pastTarget(item, waited);
  const meta = el(
    "p",
    { class: "q-meta" },
    el("span", { class: "q-wait", "data-testid": "queue-wait", "data-queued-at": item.queued_at, text: t("queue.waited", { time: mmss(waited) }) }),
    el("span", { class: "q-age", text: t("queue.age", { age: item.age }) }),
    el("span", { class: `q-channel ch-${item.channel}`, text: t(`channel.${item.channel}`) }),
    el("span", { class: "q-kind", text: t(`queue.kind.${item.kind}`) }),
  );
  if (late) meta.prepend(el("span", { class: "past-target", "data-testid": "past-target", text: `⚠ ${t("queue.past_target", { minutes: TARGET_SECONDS / 60 })}` }));
  const main = el("div", { class: "q-main" }, el("p", { class: "q-name" }, el("strong", { text: `${item.position}. ${item.patient_name}` })), meta);
  const booked = item.appointment || appointmentFor(item.consultation_id);
  if (booked) {
    main.append(
      el("p", {
        class: "q-booked",
        "data-testid": "queue-appointment",
        text: t("queue.booked", { time: localTime(booked.starts_at), doctor: booked.doctor_name || "" }),
      }),
    );
  }
  const check = checkLine(item.device_check);
  main.append(el("p", { class: check.cls, "data-testid": "device-check", text: check.text }));
  const accept = el("button", {
    type: "button",
    class: "primary",
    "data-testid": "accept",
    "data-consultation-id": item.consultation_id,
    "aria-label": t("queue.accept_label", { name: item.patient_name }),
    text: t("queue.accept"),
  });
  accept.disabled = Boolean(s.current);
  accept.addEventListener("click", () => accept_(item.consultation_id));
  return el(
    "li",
    { class: `queue-item${late ? " is-late" : ""}`, "data-testid": "queue-item", "data-consultation-id": item.consultation_id, "data-kind": item.kind },
    main,
    accept,
  );
}

/** Live waits, every second, from queued_at and the server's clock (no re-render). */
export function tickQueue() {
  for (const node of document.querySelectorAll("#queue [data-testid=queue-wait]")) {
    node.textContent = t("queue.waited", { time: mmss(queue.waited({ queued_at: node.dataset.queuedAt })) });
  }
}

async function accept_(consultationId) {
  dismissAlert();
  showError($("queue-error"), null);
  try {
    await s.live.request("consultation:accept", consultationId ? { consultation_id: consultationId } : {});
  } catch (err) {
    showError($("queue-error"), err);
  }
}

$("accept-next").addEventListener("click", () => accept_(null));
$("queue-alert").addEventListener("click", dismissAlert);
on("render", renderQueue);

// --- the sound of a patient arriving in an empty queue -----------------------------------

export function unlockSound() {
  try {
    audio ||= new AudioContext();
    audio.resume?.();
  } catch {
    audio = null;
  }
}

function beep() {
  if (!audio) return;
  try {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.0001, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.2, audio.currentTime + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.6);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.65);
    document.body.dataset.beeped = String(Number(document.body.dataset.beeped || 0) + 1);
  } catch (err) {
    console.info("console: no sound", err);
  }
}

document.addEventListener("pointerdown", unlockSound, { once: true });
document.addEventListener("keydown", unlockSound, { once: true });
