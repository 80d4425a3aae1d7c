// The consultant's step after the doctor (R-URG-5): the doctor's recommendations (the signed
// conclusion, or where the draft stands) and a short record of the patient's needs and the
// outcome (a closed list + free text), stored with the consultation and shown in "My records".

import { el } from "/static/js/dom.js";
import { $, api, fire, isConsultant, on, s, showError, t } from "./state.js";

export const NEEDS = ["none", "specialist", "tests", "clinic_visit", "home_visit", "hospital", "medicines", "second_opinion"];
export const OUTCOMES = ["finished", "booked", "referred", "emergency", "declined"];

const POLL_MS = 5000; // until the doctor signs: no live event tells the consultant
let shownFor = null;
let poll = null;

/** Load the doctor's part and the record; the panel shows once the patient has seen a
 * doctor (after a reload too: the consultation I am with is asked once). */
async function load(consultationId) {
  shownFor = consultationId;
  showError($("followup-error"), null);
  $("followup-status").textContent = "";
  try {
    const data = await api.get(`/consultations/${consultationId}/follow-up`);
    if (shownFor !== consultationId) return;
    $("followup-panel").hidden = data.conclusion.state === "no_doctor";
    if (data.conclusion.state === "no_doctor") return;
    s.seenDoctor.add(consultationId); // the booked doctor is no longer offered
    fire("render-current");
    renderAdvice(data.conclusion);
    fill(data.follow_up);
    clearTimeout(poll);
    if (data.conclusion.state !== "signed") poll = setTimeout(() => shownFor === consultationId && refresh(consultationId), POLL_MS);
  } catch (err) {
    showError($("followup-error"), err);
  }
}

/** Only the doctor's part again (the form keeps what the consultant is typing). */
async function refresh(consultationId) {
  try {
    const data = await api.get(`/consultations/${consultationId}/follow-up`);
    if (shownFor !== consultationId) return;
    renderAdvice(data.conclusion);
    if (data.conclusion.state !== "signed") poll = setTimeout(() => shownFor === consultationId && refresh(consultationId), POLL_MS);
  } catch {
    /* the next open shows the error */
  }
}

function renderAdvice(c) {
  const box = $("followup-advice");
  box.dataset.conclusion = c.state;
  if (c.state === "signed") {
    box.replaceChildren(
      el("p", { class: "muted", text: t("followup.signed", { doctor: c.doctor_name || "" }) }),
      el("h3", { text: t("conclusion.text") }),
      el("p", { "data-testid": "followup-conclusion", class: "prewrap", text: c.text }),
      el("h3", { text: t("conclusion.recommendations") }),
      el("p", { "data-testid": "followup-recommendations", class: "prewrap", text: c.recommendations }),
    );
  } else {
    box.replaceChildren(el("p", { "data-testid": "followup-draft-state", text: t(`followup.${c.state}`, { doctor: c.doctor_name || "" }) }));
  }
}

function fill(f) {
  for (const box of document.querySelectorAll("#followup-needs input")) box.checked = Boolean(f?.needs?.includes(box.value));
  $("followup-outcome").value = f?.outcome || "finished";
  $("followup-note").value = f?.note || "";
  if (f) {
    $("followup-status").textContent = t("followup.saved");
    $("followup-status").dataset.status = "saved";
  }
}

function buildForm() {
  $("followup-needs").replaceChildren(
    ...NEEDS.map((need) =>
      el("label", { class: "check" }, el("input", { type: "checkbox", value: need, "data-testid": "followup-need" }), el("span", { text: t(`followup.need.${need}`) })),
    ),
  );
  const chosen = $("followup-outcome").value || "finished";
  $("followup-outcome").replaceChildren(...OUTCOMES.map((o) => el("option", { value: o, text: t(`followup.outcome.${o}`) })));
  $("followup-outcome").value = chosen;
}

$("followup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("followup-error"), null);
  if (!shownFor) return;
  const needs = [...document.querySelectorAll("#followup-needs input:checked")].map((box) => box.value);
  try {
    const saved = await api.put(`/consultations/${shownFor}/follow-up`, {
      needs,
      outcome: $("followup-outcome").value,
      note: $("followup-note").value.trim(),
    });
    fill(saved);
  } catch (err) {
    showError($("followup-error"), err);
  }
});

on("back", (p) => isConsultant() && load(p.consultation_id));
on("current", (p) => {
  if (!isConsultant()) return;
  if (p && p.consultation_id !== shownFor) load(p.consultation_id);
  if (!p && shownFor) {
    // The consultation ended or moved on: keep the record on screen only while it is mine.
    $("followup-panel").hidden = true;
    shownFor = null;
    clearTimeout(poll);
  }
});
on("render", () => {
  const needs = [...document.querySelectorAll("#followup-needs input:checked")].map((box) => box.value);
  buildForm();
  for (const box of document.querySelectorAll("#followup-needs input")) box.checked = needs.includes(box.value);
  if (shownFor) load(shownFor);
});
buildForm();
