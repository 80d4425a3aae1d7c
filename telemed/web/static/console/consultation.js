// The consultation I am with: consultation:state opens and closes the call; the consultant
// transfers (the booked doctor first when there is a booking, R-SCH-3; the duty doctor
// otherwise, R-URG-3) and closes; hang-ups are asked first in the confirm dialog.

import { mountCall } from "/static/js/call.js";
import { appointmentById, appointmentFor, loadDay } from "./day.js";
import { $, api, fire, isConsultant, isDoctor, localTime, nameOf, on, s, showError, syncClock, t } from "./state.js";

const askedDay = new Set();

function myActiveState() {
  return isDoctor() ? "with_doctor" : "with_consultant";
}

export function bindConsultation(live) {
  live.on("consultation:state", onConsultationState);
  live.on("consultation:closed", onClosed);
}

function onConsultationState(p) {
  const id = p.consultation_id;
  const prev = s.current;
  syncClock(p.server_time);
  if (p.appointment) s.known.set(id, { ...(s.known.get(id) || {}), appointment: p.appointment });
  if (p.state === myActiveState()) {
    const back = prev?.consultation_id === id && prev.state !== p.state;
    s.current = p;
    $("work-handed").hidden = true;
    if (!s.call || s.call.id !== id) openCall(p);
    if (back || (!isDoctor() && s.handedOver === id)) {
      $("work-handed").textContent = t("work.back", { name: nameOf(p) });
      $("work-handed").hidden = false;
      s.handedOver = null;
      fire("back", p); // the consultant's follow-up (followup.js)
    }
    showError($("work-error"), null);
  } else if (prev?.consultation_id === id || s.call?.id === id) {
    // The patient moved on from me: to the doctor (consultant) or back (doctor).
    closeCall();
    s.current = null;
    const line = $("work-handed");
    if (isDoctor()) {
      line.textContent = t("work.leg_ended", { name: nameOf(p) });
      fire("leg-ended", id, nameOf(p)); // the conclusion form (doctor.js)
    } else {
      line.textContent = t("work.handed", { name: nameOf(p) });
      s.handedOver = id;
    }
    line.hidden = false;
  }
  renderCurrent();
  fire("render-queue");
}

function onClosed(p) {
  if (s.current?.consultation_id !== p.consultation_id && s.call?.id !== p.consultation_id) {
    if (s.handedOver === p.consultation_id) s.handedOver = null;
    return;
  }
  const name = nameOf(s.current);
  closeCall();
  s.current = null;
  const line = $("work-handed");
  line.textContent = p.reason === "finished" ? t("work.closed", { name }) : t("work.left", { reason: t(`close_reason.${p.reason}`) });
  line.hidden = false;
  renderCurrent();
  fire("render-queue");
  fire("closed", p);
}

function openCall(p) {
  closeCall();
  const handle = mountCall($("call-root"), {
    live: s.live,
    api,
    t,
    consultationId: p.consultation_id,
    polite: false,
    channel: p.channel,
    iceServers: p.ice_servers || s.live.iceServers,
    myRole: s.me.role,
    legId: p.leg_id || null,
    onHangup: () => (isDoctor() ? hangUp("end") : hangUp("close")),
  });
  s.call = { id: p.consultation_id, handle };
  fire("opened", p); // the tools panel books for this patient, documents load
}

export function closeCall() {
  s.call?.handle.destroy();
  s.call = null;
  if ($("confirm-dialog").open) $("confirm-dialog").close(); // nothing left to hang up
}

/** The booking of the current consultation: from the state (QUEUE_DELTAS) or the day's list. */
export function bookingOf(p) {
  if (!p) return null;
  return p.appointment || s.known.get(p.consultation_id)?.appointment || (p.appointment_id && appointmentById(p.appointment_id)) || appointmentFor(p.consultation_id);
}

export function renderCurrent() {
  const p = s.current;
  $("work-idle").hidden = Boolean(p) || !$("work-handed").hidden;
  $("work-current").hidden = !p;
  if (!p) {
    fire("current", null);
    return;
  }
  const known = s.known.get(p.consultation_id);
  $("current-name").textContent = nameOf(p);
  const bits = [];
  if (known?.age != null) bits.push(t("queue.age", { age: known.age }));
  bits.push(t(`channel.${p.channel}`), t(`queue.kind.${p.kind}`));
  $("current-meta").textContent = bits.join(" · ");
  $("current-state").textContent = t(`state.${p.state}`);
  renderTransfer(p);
  fire("current", p);
}

/** Booked patient: "transfer to the booked doctor (name, time)" first, the duty doctor as
 * the alternative (R-SCH-3); otherwise the duty doctor (R-URG-3). */
function renderTransfer(p) {
  const booked = isConsultant() && !s.seenDoctor.has(p.consultation_id) ? bookingOf(p) : null;
  const toBooked = $("transfer-booked-doctor");
  const toDuty = $("transfer-duty-doctor");
  if (!isConsultant()) return;
  if (p.appointment_id && !booked && !askedDay.has(p.appointment_id)) {
    askedDay.add(p.appointment_id); // not in the day's list yet: read it once more
    loadDay().then(() => s.current === p && renderTransfer(p));
  }
  toBooked.hidden = !booked;
  toDuty.classList.toggle("primary", !booked);
  $("booked-line").hidden = !booked;
  if (booked) {
    const doctor = booked.doctor_name || "";
    toBooked.textContent = t("consultant.transfer_booked", { name: doctor, time: localTime(booked.starts_at) });
    toBooked.dataset.doctorId = booked.doctor_id;
    $("booked-line").textContent = t("consultant.booked_line", {
      name: doctor,
      role: booked.doctor_role ? t(`roles.${booked.doctor_role}`) : "",
      time: localTime(booked.starts_at),
    });
    toDuty.textContent = t("consultant.transfer_duty_instead");
  } else {
    toDuty.textContent = t("consultant.transfer");
  }
}

async function act(fn) {
  showError($("work-error"), null);
  try {
    await fn();
  } catch (err) {
    showError($("work-error"), err);
  }
}

$("transfer-duty-doctor").addEventListener("click", () =>
  act(() => s.live.request("consultation:transfer", { consultation_id: s.current.consultation_id, to: "duty_doctor" })),
);
$("transfer-booked-doctor").addEventListener("click", (event) =>
  act(() =>
    s.live.request("consultation:transfer", {
      consultation_id: s.current.consultation_id,
      to: "doctor",
      doctor_id: event.currentTarget.dataset.doctorId,
    }),
  ),
);

/** Ask in an in-page modal dialog (Esc or Cancel says no; focus starts on Cancel). */
function confirmAction(kind) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = t(`confirm.${kind}_title`);
  $("confirm-text").textContent = t(`confirm.${kind}_text`, { name: nameOf(s.current) });
  $("confirm-yes").textContent = t(`confirm.${kind}_yes`);
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
    $("confirm-no").focus();
  });
}

/** Staff hang-up: the consultant closes the consultation, a doctor ends the leg. */
async function hangUp(kind) {
  const id = s.current?.consultation_id;
  if (!id || $("confirm-dialog").open || !(await confirmAction(kind))) return;
  if (s.current?.consultation_id !== id) return; // it moved on while the dialog was open
  if (kind === "close") {
    const outcome = $("followup-outcome")?.value || "finished";
    await act(() => s.live.request("consultation:close", { consultation_id: id, outcome }));
  } else {
    await act(() => s.live.request("consultation:transfer", { consultation_id: id, to: "consultant" }));
  }
}
$("close-consultation").addEventListener("click", () => hangUp("close"));
$("end-leg").addEventListener("click", () => hangUp("end"));
on("render", renderCurrent);
on("render-current", () => s.current && renderTransfer(s.current));
