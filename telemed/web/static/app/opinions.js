// The second opinion for the patient (R-SECOND, seed 000): asked in one of their consultations
// with a question and documents of the medical card; "sent to the specialist" with the due
// date once the consultant assigns it; the delivered conclusion at #/conclusions/ID, from
// where the patient books the specialist who wrote it.

import { $, act, api, el, explain, i18n, say, state, t, toast, when, whenZ, words } from "./ui.js";
import { uploadFiles } from "./card.js";
import { conclusionBlock } from "./records.js";

/** A calendar date of the server ("2026-12-16") in words; dates have no zone. */
function day(iso) {
  return new Intl.DateTimeFormat(i18n.lang, { dateStyle: "long", timeZone: "UTC" }).format(new Date(`${iso}T00:00:00Z`));
}

export async function loadOpinions() {
  $("opinion-intro").textContent = t("opinion.intro", { days: state.config.second_opinion_working_days || 14 });
  $("opinion-status").textContent = "";
  try {
    await Promise.all([loadConsultations(), loadDocs(), loadCases()]);
  } catch (error) {
    say(explain(error));
  }
}

async function loadConsultations() {
  const { items } = await api.get("/consultations");
  const select = $("opinion-consultation");
  const send = document.querySelector('[data-testid="opinion-send"]');
  const kinds = words().kind;
  select.replaceChildren(...items.map((c) => el("option", { value: c.consultation_id },
    `${when(c.created_at)} · ${kinds[c.kind] || c.kind}`)));
  // Asked from the call screen: the consultation the patient is in comes first.
  if (state.opinionFor && items.some((c) => c.consultation_id === state.opinionFor)) select.value = state.opinionFor;
  send.disabled = !items.length;
  if (!items.length) $("opinion-status").textContent = t("opinion.no_consultation");
}

async function loadDocs() {
  const box = $("opinion-docs");
  const legend = box.querySelector("legend");
  const { items } = await api.get("/documents");
  const chosen = new Set([...box.querySelectorAll("input:checked")].map((input) => input.value));
  box.replaceChildren(legend, ...(items.length ? items.map((doc) => el("label", {},
    el("input", { type: "checkbox", value: doc.document_id, testid: "opinion-doc", checked: chosen.has(doc.document_id) }),
    ` ${doc.filename}`)) : [el("p", { class: "hint" }, t("opinion.none_docs"))]));
}

function caseLine(c) {
  if (c.state === "assigned") return t("opinion.assigned", { name: c.specialist_name || "", date: day(c.due_on) });
  return t(`opinion.${c.state}`);
}

async function loadCases() {
  const { items } = await api.get("/second-opinions");
  const list = $("opinions");
  if (!items.length) return list.replaceChildren(el("li", { class: "empty" }, t("opinion.none")));
  items.sort((a, b) => b.requested_at.localeCompare(a.requested_at));
  list.replaceChildren(...items.map((c) => el("li", { testid: "opinion", "data-state": c.state, "data-second-opinion-id": c.second_opinion_id },
    el("strong", {}, t("opinion.asked", { date: whenZ(c.requested_at) })),
    c.question ? el("p", { class: "question" }, c.question) : null,
    el("p", { testid: "opinion-state" }, caseLine(c)),
    c.state === "delivered" && c.conclusion_id
      ? el("a", { href: `#/conclusions/${c.conclusion_id}`, class: "button primary", testid: "opinion-conclusion" }, t("opinion.open"))
      : null)));
  return undefined;
}

$("opinion-upload").addEventListener("change", (event) => {
  const input = event.currentTarget;
  act(null, async () => {
    try {
      await uploadFiles(input.files, $("opinion-status"));
    } finally {
      input.value = "";
    }
    await loadDocs();
  });
});

$("opinion-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(event.submitter, async () => {
    const documentIds = [...document.querySelectorAll('#opinion-docs input:checked')].map((input) => input.value);
    if (!documentIds.length) throw new Error(t("opinion.pick_one"));
    await api.post("/second-opinions", {
      consultation_id: $("opinion-consultation").value,
      question: $("opinion-question").value.trim(),
      document_ids: documentIds,
    });
    $("opinion-question").value = "";
    await Promise.all([loadDocs(), loadCases()]);
    for (const input of document.querySelectorAll('#opinion-docs input')) input.checked = false;
    $("opinion-status").textContent = t("opinion.requested");
    $("opinion-status").focus?.();
  });
});

// --- the conclusion at #/conclusions/ID (the link the consultant delivers into the chat) -------

export async function showConclusion(id) {
  const view = $("conclusion-view");
  const book = $("conclusion-book");
  view.replaceChildren();
  book.replaceChildren();
  book.hidden = true;
  let conclusion;
  try {
    conclusion = await api.get(`/conclusions/${encodeURIComponent(id)}`);
  } catch (error) {
    view.append(el("p", { testid: "conclusion-missing" }, error?.code === "not_found" ? t("conclusion.not_found") : explain(error)));
    return;
  }
  view.dataset.conclusionId = conclusion.conclusion_id;
  view.append(
    conclusion.second_opinion_id ? el("h2", {}, t("conclusion.opinion")) : null,
    el("p", { class: "hint" }, whenZ(conclusion.signed_at)),
    conclusionBlock(conclusion),
  );
  if (conclusion.second_opinion_id) await offerBooking(conclusion.second_opinion_id);
}

/** Seed 000: on request, a consultation with the doctor who wrote the conclusion. */
async function offerBooking(caseId) {
  const box = $("conclusion-book");
  const c = await api.get(`/second-opinions/${caseId}`);
  box.hidden = false;
  if (c.appointment_id) {
    const { items } = await api.get("/appointments");
    const booked = items.find((a) => a.appointment_id === c.appointment_id);
    box.replaceChildren(el("p", { testid: "opinion-booked" }, t("conclusion.appointment", { time: booked ? whenZ(booked.starts_at) : "" })));
    return;
  }
  const { slots } = await api.get(`/slots?role=specialist&doctor_id=${encodeURIComponent(c.specialist_id)}`);
  if (!slots.length) {
    box.replaceChildren(el("p", {}, t("conclusion.no_slots")));
    return;
  }
  const buttons = slots.slice(0, 8).map((slot) => el("button", {
    type: "button",
    testid: "opinion-slot",
    "data-starts-at": slot.starts_at,
    onclick: (event) => act(event.currentTarget, async () => {
      const made = await api.post(`/second-opinions/${caseId}/appointment`, { starts_at: slot.starts_at, channel: "video" });
      toast(t("conclusion.booked", { time: whenZ(made.starts_at) }), { testid: "opinion-booked-toast" });
      await offerBooking(caseId);
    }),
  }, whenZ(slot.starts_at)));
  box.replaceChildren(el("h2", {}, t("conclusion.book")), el("p", {}, t("conclusion.book_intro")),
    el("div", { class: "times", role: "group", "aria-label": t("conclusion.book") }, ...buttons));
}
