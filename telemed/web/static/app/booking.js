// Booking a psychologist or specialist from free slots (R-SCH-2): one day at a time, in the
// patient's time zone, named above the slots (R-CAL-1). "My appointments" stays in app.js.

import { $, act, api, el, explain, say, t, toast, when, whenZ, zoneName } from "./ui.js";

let chosenSlot = null;

for (const input of document.querySelectorAll('input[name="book-role"]')) input.addEventListener("change", loadSlots);

export async function loadSlots() {
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
        "aria-label": `${whenZ(slot.starts_at)}, ${slot.doctor_name}`,
        onclick: (event) => chooseSlot(slot, event.currentTarget),
      }, el("span", { class: "time" }, when(slot.starts_at, { timeStyle: "short" })), el("span", { class: "doc" }, slot.doctor_name))));
    };
    const dayButtons = days.map(([day], index) => el("button", { type: "button", testid: "slot-day", onclick: () => pickDay(index) }, day));
    box.replaceChildren(el("p", { class: "hint", testid: "booking-zone" }, t("calendar.zone", { zone: zoneName() })),
      el("div", { class: "days", role: "group", "aria-label": t("booking.day") }, ...dayButtons), times);
    pickDay(0);
  } catch (error) {
    say(explain(error));
  }
  return undefined;
}

function chooseSlot(slot, button) {
  chosenSlot = slot;
  for (const other of document.querySelectorAll('[data-testid="slot"]')) other.setAttribute("aria-pressed", String(other === button));
  $("slot-chosen").textContent = t("booking.chosen", { time: whenZ(slot.starts_at), doctor: slot.doctor_name });
  document.querySelector('[data-testid="book-confirm"]').disabled = false;
}

document.querySelector('[data-testid="book-confirm"]').addEventListener("click", (event) => {
  if (!chosenSlot) return;
  act(event.currentTarget, async () => {
    const channel = document.querySelector('input[name="book-channel"]:checked').value;
    const made = await api.post("/appointments", { slot_id: chosenSlot.slot_id, channel });
    toast(t("booking.booked", { time: whenZ(made.starts_at) }), { testid: "booked" });
    await loadSlots();
    window.dispatchEvent(new Event("telemed:booked"));
  });
});

