// Second opinion in the console (R-SECOND, seed 000): the consultant sees the open requests,
// overdue first, assigns a specialist (the 14-working-day clock starts) and delivers the
// signed conclusion into the patient's chat; the specialist opens the documents in the
// viewer and writes and signs the conclusion here.

import { el } from "/static/js/dom.js";
import { loadDay } from "./day.js";
import { documentList } from "./documents.js";
import { $, api, i18n, isConsultant, on, s, showError, t, zonedTime } from "./state.js";

const ROLES = new Set(["consultant", "specialist"]);
let cases = [];
let openId = null;

function dueText(c) {
  if (!c.due_on) return "";
  return t("second.due", { time: new Date(`${c.due_on}T00:00:00`).toLocaleDateString(i18n.lang) });
}

export async function loadCases() {
  if (!ROLES.has(s.me?.role)) return;
  try {
    cases = (await api.get("/second-opinions")).items;
    renderList();
    if (openId) openCase(openId);
  } catch (err) {
    showError($("second-error"), err);
  }
}

function renderList() {
  $("second-empty").hidden = cases.length > 0;
  $("second-list").replaceChildren(
    ...cases.map((c) => {
      const open = el("button", { type: "button", "data-testid": "second-open", "aria-label": t("second.open_label", { name: c.patient_name }), text: t("second.open") });
      open.addEventListener("click", () => openCase(c.second_opinion_id));
      const li = el(
        "li",
        { class: `second-item${c.overdue ? " is-overdue" : ""}`, "data-testid": "second-item", "data-case-id": c.second_opinion_id, "data-state": c.state },
        el("span", { class: "p-name", text: c.patient_name }),
        el("span", { class: "muted", "data-testid": "second-state", text: t(`second.state.${c.state}`) }),
      );
      if (c.due_on) li.append(el("span", { class: "muted", "data-testid": "second-due", text: dueText(c) }));
      if (c.overdue) li.append(el("span", { class: "overdue", "data-testid": "overdue", text: t("second.overdue") }));
      li.append(open);
      return li;
    }),
  );
}

async function openCase(id) {
  openId = id;
  showError($("second-error"), null);
  let c;
  try {
    c = await api.get(`/second-opinions/${id}`);
  } catch (err) {
    showError($("second-error"), err);
    return;
  }
  const box = $("second-case");
  box.hidden = false;
  box.dataset.caseId = id;
  box.dataset.state = c.state;
  const docs = el("ul", { class: "docs", "data-testid": "second-documents" }, ...documentList(c.documents || [], $("second-error")));
  box.replaceChildren(
    el("h3", { text: `${c.patient_name} · ${t(`second.state.${c.state}`)}${c.due_on ? ` · ${dueText(c)}` : ""}` }),
    el("p", { class: "muted", text: t("second.question") }),
    el("p", { class: "prewrap", "data-testid": "second-question", text: c.question || "—" }),
    el("p", { class: "muted", text: t("second.documents") }),
    docs,
  );
  if (isConsultant()) box.append(...consultantActions(c));
  if (s.me.role === "specialist" && c.state === "assigned") box.append(conclusionForm(c));
}

function consultantActions(c) {
  const out = [];
  if (c.state === "requested" || c.state === "assigned") {
    const select = el("select", { id: "second-specialist", "data-testid": "second-specialist" });
    select.replaceChildren(...s.doctors.filter((d) => d.role === "specialist").map((d) => el("option", { value: d.doctor_id, text: d.name })));
    if (c.specialist_id) select.value = c.specialist_id;
    const assign = el("button", { type: "button", class: "primary", "data-testid": "second-assign", text: t("second.assign") });
    assign.addEventListener("click", () =>
      act(async () => {
        await api.post(`/second-opinions/${c.second_opinion_id}/assign`, { specialist_id: select.value });
        $("second-status").textContent = t("second.assigned");
      }),
    );
    out.push(el("div", { class: "actions" }, el("label", { for: "second-specialist", text: t("second.specialist") }), select, assign));
  }
  if ((c.state === "concluded" || c.state === "delivered") && c.specialist_id && !c.appointment_id) out.push(bookSpecialist(c));
  if (c.state === "concluded") {
    const deliver = el("button", { type: "button", class: "primary", "data-testid": "second-deliver", text: t("second.deliver") });
    deliver.addEventListener("click", () =>
      act(async () => {
        await api.post(`/second-opinions/${c.second_opinion_id}/deliver`);
        $("second-status").textContent = t("second.delivered");
      }),
    );
    out.push(el("div", { class: "actions" }, deliver));
  }
  return out;
}

/** On the patient's request, a consultation with the opinion's specialist (R-SECOND, seed
 * 000): their free slots in the patient's time zone, named. */
function bookSpecialist(c) {
  const select = el("select", { id: "second-slot", "data-testid": "second-slot" });
  const channel = el(
    "select",
    { id: "second-channel", "data-testid": "second-channel" },
    ...["video", "audio", "chat"].map((ch) => el("option", { value: ch, text: t(`channel.${ch}`) })),
  );
  const book = el("button", { type: "button", "data-testid": "second-book", text: t("second.book") });
  const box = el(
    "div",
    { class: "grid-form second-book" },
    el("h3", { class: "span", text: t("second.book_title", { name: c.specialist_name || "" }) }),
    el("label", { for: "second-slot", text: t("tools.slots") }),
    select,
    el("label", { for: "second-channel", text: t("tools.channel") }),
    channel,
    el("div", { class: "form-actions" }, book),
  );
  let zone = "Europe/Moscow";
  const query = new URLSearchParams({ role: "specialist", doctor_id: c.specialist_id, patient_id: c.patient_id });
  api
    .get(`/slots?${query}`)
    .then((data) => {
      zone = data.time_zone || zone;
      select.replaceChildren(...data.slots.slice(0, 60).map((slot) => el("option", { value: slot.starts_at, text: zonedTime(slot.starts_at, zone) })));
      book.disabled = data.slots.length === 0;
    })
    .catch((err) => showError($("second-error"), err));
  book.addEventListener("click", () =>
    act(async () => {
      const booked = await api.post(`/second-opinions/${c.second_opinion_id}/appointment`, { starts_at: select.value, channel: channel.value });
      $("second-status").textContent = t("second.booked", { time: zonedTime(booked.starts_at, zone) });
      loadDay();
    }),
  );
  return box;
}

function conclusionForm(c) {
  const text = el("textarea", { id: "second-text", "data-testid": "second-text", rows: "5", maxlength: "20000", required: true });
  const recs = el("textarea", { id: "second-recommendations", "data-testid": "second-recommendations", rows: "4", maxlength: "20000" });
  const sign = el("button", { type: "submit", class: "primary", "data-testid": "second-sign", text: t("second.sign") });
  const form = el(
    "form",
    { class: "stack", "data-testid": "second-conclusion-form" },
    el("label", { for: "second-text", text: t("second.conclusion") }),
    text,
    el("label", { for: "second-recommendations", text: t("second.recommendations") }),
    recs,
    el("div", { class: "actions" }, sign),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(async () => {
      await api.post(`/second-opinions/${c.second_opinion_id}/conclusion`, { text: text.value.trim(), recommendations: recs.value.trim(), sign: true });
      $("second-status").textContent = t("second.signed");
    });
  });
  return form;
}

async function act(fn) {
  showError($("second-error"), null);
  $("second-status").textContent = "";
  try {
    await fn();
  } catch (err) {
    showError($("second-error"), err);
    return;
  }
  await loadCases();
}

$("second-refresh").addEventListener("click", () => loadCases());

on("enter", () => {
  $("second-panel").hidden = !ROLES.has(s.me?.role);
  $("second-case").hidden = true;
  openId = null;
  loadCases();
});
on("render", () => ROLES.has(s.me?.role) && loadCases());
