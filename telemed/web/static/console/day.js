// The day's list: upcoming appointments (a consultant sees all, a doctor their own), each
// with its state and, for the consultant, whether the patient has been informed (R-SCH-1).
// appointment:cancelled and appointment:no_show mark the row (and the queue drops the item).

import { el } from "/static/js/dom.js";
import { $, api, doctorName, isConsultant, localTime, on, s, showError, t } from "./state.js";

const rows = new Map(); // appointment id -> appointment (GET /appointments)
const marks = new Map(); // appointment id -> "cancelled" | "no_show", from live events

/** The appointment a consultation was booked by, if this console knows it. */
export function appointmentFor(consultationId) {
  if (!consultationId) return null;
  for (const a of rows.values()) if (a.consultation_id === consultationId) return withNames(a);
  return null;
}

export function appointmentById(id) {
  const a = rows.get(id);
  return a ? withNames(a) : null;
}

function withNames(a) {
  return { ...a, doctor_name: a.doctor_name || doctorName(a.doctor_id) };
}

export async function loadDay() {
  try {
    const { items } = await api.get("/appointments");
    rows.clear();
    for (const a of items) rows.set(a.appointment_id, a);
    renderDay();
  } catch (err) {
    showError($("day-error"), err);
  }
}

export function bindDay(live) {
  live.on("appointment:cancelled", (p) => mark(p.appointment_id, "cancelled"));
  live.on("appointment:no_show", (p) => mark(p.appointment_id, "no_show"));
  live.on("appointment:booked", () => loadDay());
}

function mark(id, state) {
  marks.set(id, state);
  const row = rows.get(id);
  if (row) row.state = state;
  renderDay();
  loadDay(); // the rest of the row (the freed slot, the state) from the server
}

/** A queue item left as cancelled / no-show: mark its appointment if we know it. */
on("moved", (item) => {
  const a = appointmentFor(item.consultation_id);
  if (a) mark(a.appointment_id, item.reason);
});

function stateOf(a) {
  return marks.get(a.appointment_id) || a.state;
}

export function renderDay() {
  const list = $("day-list");
  if (!list) return;
  const items = [...rows.values()].sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at));
  $("day-empty").hidden = items.length > 0;
  list.replaceChildren(
    ...items.map((a) => {
      const state = stateOf(a);
      const li = el(
        "li",
        { class: `day-item is-${state}`, "data-testid": "day-item", "data-appointment-id": a.appointment_id, "data-state": state },
        el("span", { class: "d-time", text: localTime(a.starts_at) }),
        el("span", { class: "d-who", text: [a.patient_name, withNames(a).doctor_name].filter(Boolean).join(" → ") }),
        el("span", { class: `d-state st-${state}`, "data-testid": "day-state", text: t(`day.state.${state}`) }),
      );
      if (isConsultant() && state === "booked") li.append(informingMark(a));
      return li;
    }),
  );
}

function informingMark(a) {
  const done = a.informing === "done";
  const node = el("span", {
    class: `d-informed ${done ? "ok" : "due"}`,
    "data-testid": "informing",
    "data-informing": done ? "done" : "due",
    text: t(done ? "day.informed" : "day.inform_due", { via: t(`notify.${a.notify_via}`) }),
  });
  if (done || a.notify_via === "push") return node; // push/SMS: the outbox says when it went
  const confirm = el("button", { type: "button", "data-testid": "confirm-informed", text: t("day.confirm_informed") });
  confirm.addEventListener("click", async () => {
    showError($("day-error"), null);
    try {
      rows.set(a.appointment_id, await api.post(`/appointments/${a.appointment_id}/informed`));
      renderDay();
    } catch (err) {
      showError($("day-error"), err);
    }
  });
  return el("span", { class: "d-inform" }, node, confirm);
}

on("render", renderDay);
on("enter", () => {
  $("day-panel").hidden = false;
  rows.clear();
  marks.clear();
  if (s.me) loadDay();
});
