// The consultant's tools: identify a caller (R-AUTH-2), register one (R-AUTH-3), send the
// login code, and book from the free slots shown in the patient's time zone with the zone
// named, saying how the patient is informed (R-SCH-1): chat now, push/SMS, or a call the
// consultant makes and then confirms on the day's list.

import { ApiError } from "/static/js/api.js";
import { el } from "/static/js/dom.js";
import { loadDay } from "./day.js";
import { $, api, isConsultant, on, s, showError, t, zonedTime } from "./state.js";

const b = { for: null, found: null, slots: [], zone: null, chosen: null };

function status(text) {
  $("tools-status").textContent = text;
}

function identifyBody() {
  const body = {
    policy_number: $("identify-policy").value.trim(),
    full_name: $("identify-name").value.trim(),
    birth_date: $("identify-birth").value,
  };
  const phone = $("identify-phone").value.trim();
  if (phone) body.phone = phone;
  return body;
}

function showFound(p) {
  b.found = p;
  $("found-text").textContent = t("tools.found", {
    name: p.full_name,
    age: p.age,
    policy: p.policy_number,
    active: t(p.policy_active ? "tools.active" : "tools.inactive"),
    phone: p.masked_phone,
  });
  $("found").hidden = false;
  setBookFor({ patient_id: p.patient_id, name: p.full_name, consultation_id: null });
}

$("identify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("tools-error"), null);
  status("");
  $("found").hidden = true;
  $("register-form").hidden = true;
  try {
    showFound(await api.post("/patients/identify", identifyBody()));
  } catch (err) {
    if (err instanceof ApiError && err.code === "not_found") {
      $("register-form").hidden = false;
      $("register-sex").focus();
    } else showError($("tools-error"), err);
  }
});

$("register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("tools-error"), null);
  try {
    showFound(await api.post("/patients", { ...identifyBody(), sex: $("register-sex").value }));
    $("register-form").hidden = true;
    status(t("tools.registered"));
  } catch (err) {
    showError($("tools-error"), err);
  }
});

$("send-login-code").addEventListener("click", async () => {
  showError($("tools-error"), null);
  try {
    await api.post(`/patients/${b.found.patient_id}/login-code`);
    status(t("tools.code_sent"));
  } catch (err) {
    showError($("tools-error"), err);
  }
});

/** Book for this patient (the one identified, or the one I am with). */
export function setBookFor(target) {
  const changed = b.for?.patient_id !== target.patient_id;
  b.for = target;
  $("book-form").hidden = false;
  $("book-title").textContent = t("tools.book_for", { name: target.name });
  renderNotifyChoices();
  if (changed) loadSlots();
}

on("opened", (p) => {
  if (!isConsultant()) return;
  const known = s.known.get(p.consultation_id);
  const patientId = known?.patient_id || p.patient_id;
  if (patientId) setBookFor({ patient_id: patientId, name: known?.patient_name || p.counterpart?.name || "", consultation_id: p.consultation_id });
});
on("current", (p) => {
  if (b.for && !p) b.for = { ...b.for, consultation_id: null };
  renderNotifyChoices();
});

export function loadDoctors() {
  return api
    .get("/doctors")
    .then(({ doctors }) => {
      s.doctors = doctors;
      const select = $("book-doctor");
      select.replaceChildren(
        el("option", { value: "", text: t("tools.any_doctor") }),
        ...doctors.filter((d) => d.role === $("book-role").value).map((d) => el("option", { value: d.doctor_id, text: d.name })),
      );
    })
    .catch((err) => showError($("tools-error"), err));
}

async function loadSlots() {
  if (!b.for) return;
  showError($("tools-error"), null);
  const query = new URLSearchParams({ role: $("book-role").value, patient_id: b.for.patient_id });
  if ($("book-doctor").value) query.set("doctor_id", $("book-doctor").value);
  try {
    const data = await api.get(`/slots?${query}`);
    b.slots = data.slots;
    b.zone = data.time_zone || "Europe/Moscow";
    b.chosen = null;
    renderSlots();
  } catch (err) {
    showError($("tools-error"), err);
  }
}

function renderSlots() {
  $("book-zone").textContent = t("tools.zone", { zone: b.zone });
  $("slots-empty").hidden = b.slots.length > 0;
  $("slots").replaceChildren(
    ...b.slots.slice(0, 60).map((slot) => {
      const label = `${zonedTime(slot.starts_at, b.zone)} — ${slot.doctor_name}`;
      const input = el("input", { type: "radio", name: "slot", value: slot.slot_id, "data-testid": "book-slot", "aria-label": label });
      input.addEventListener("change", () => (b.chosen = slot));
      return el("li", {}, el("label", { class: "slot" }, input, el("span", { text: label })));
    }),
  );
}

function renderNotifyChoices() {
  // Chat reaches the patient only while they are in the consultation with me.
  const chat = $("book-notify").querySelector('option[value="chat"]');
  const withMe = Boolean(b.for?.consultation_id && s.current?.consultation_id === b.for.consultation_id);
  chat.disabled = !withMe;
  if (!withMe && $("book-notify").value === "chat") $("book-notify").value = "push";
}

$("book-role").addEventListener("change", () => loadDoctors().then(loadSlots));
$("book-doctor").addEventListener("change", loadSlots);

$("book-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("tools-error"), null);
  if (!b.for) return;
  if (!b.chosen) {
    showError($("tools-error"), new ApiError("choose_slot", ""));
    return;
  }
  const via = $("book-notify").value;
  try {
    const body = {
      patient_id: b.for.patient_id,
      doctor_id: b.chosen.doctor_id,
      starts_at: b.chosen.starts_at,
      channel: $("book-channel").value,
      kind: "scheduled",
      requires_documents: $("book-documents").checked,
      notify_via: via,
    };
    if (via === "chat") body.consultation_id = b.for.consultation_id;
    const booked = await api.post("/appointments", body);
    const when = zonedTime(booked.starts_at, b.zone);
    status(t(booked.informing === "done" ? "tools.booked_informed" : "tools.booked_inform_due", { time: when, via: t(`notify.${via}`) }));
    $("tools-status").dataset.informing = booked.informing;
    loadSlots();
    loadDay();
  } catch (err) {
    showError($("tools-error"), err);
  }
});

on("enter", () => {
  if (isConsultant()) loadDoctors();
});
on("render", () => {
  if (b.slots.length) renderSlots();
  if (b.for) $("book-title").textContent = t("tools.book_for", { name: b.for.name });
});
