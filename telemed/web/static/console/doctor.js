// The doctor's leg: the countdown to the limit and its warnings, end of leg (in
// consultation.js), the conclusion form and the conclusions still to sign (R-CONCL-1).

import { el, mmss } from "/static/js/dom.js";
import { $, api, i18n, isDoctor, localTime, on, s, serverNow, showError, t } from "./state.js";

let conclusionFor = null; // {consultation_id, name}

export function bindDoctor(live) {
  live.on("limit:warning", (p) => {
    if (p.consultation_id !== s.current?.consultation_id) return;
    const warn = $("limit-warning");
    warn.textContent = t("doctor.warning", { time: new Date(p.ends_at).toLocaleTimeString(i18n.lang, { hour: "2-digit", minute: "2-digit" }) });
    warn.hidden = false;
  });
  live.on("limit:reached", (p) => {
    if (p.consultation_id !== s.current?.consultation_id) return;
    $("limit-warning").textContent = t("doctor.reached");
    $("limit-warning").hidden = false;
  });
}

on("current", (p) => {
  $("limit").hidden = !(isDoctor() && p?.limit_ends_at);
  if ($("limit").hidden) $("limit-warning").hidden = true;
  renderCountdown();
});

export function renderCountdown() {
  const p = s.current;
  if (!p?.limit_ends_at || !isDoctor()) return;
  const left = (Date.parse(p.limit_ends_at) - serverNow()) / 1000;
  const node = $("limit-countdown");
  node.textContent = mmss(left);
  node.classList.toggle("is-low", left < 300);
}

on("leg-ended", (id, name) => {
  openConclusion(id, name);
  loadPending();
});
on("closed", () => isDoctor() && loadPending());

async function openConclusion(consultationId, name, draftId = null) {
  conclusionFor = { consultation_id: consultationId, name };
  $("conclusion-for").textContent = t("conclusion.for", { name });
  $("conclusion-status").textContent = "";
  showError($("conclusion-error"), null);
  $("conclusion-text").value = "";
  $("conclusion-recommendations").value = "";
  if (!draftId) return;
  try {
    const draft = await api.get(`/conclusions/${draftId}`);
    $("conclusion-text").value = draft.text;
    $("conclusion-recommendations").value = draft.recommendations;
  } catch (err) {
    showError($("conclusion-error"), err);
  }
}

async function writeConclusion(sign) {
  const status = $("conclusion-status");
  showError($("conclusion-error"), null);
  if (!conclusionFor) {
    status.textContent = t("conclusion.choose");
    return;
  }
  const text = $("conclusion-text").value.trim();
  if (!text) {
    $("conclusion-text").reportValidity();
    return;
  }
  try {
    const body = { text, recommendations: $("conclusion-recommendations").value.trim() };
    if (sign) body.sign = true;
    await api.post(`/consultations/${conclusionFor.consultation_id}/conclusion`, body);
    status.textContent = t(sign ? "conclusion.signed" : "conclusion.saved");
    status.dataset.status = sign ? "signed" : "draft";
    loadPending();
  } catch (err) {
    showError($("conclusion-error"), err);
  }
}
$("conclusion-save").addEventListener("click", () => writeConclusion(false));
$("conclusion-sign").addEventListener("click", () => writeConclusion(true));

export async function loadPending() {
  let data;
  try {
    data = await api.get("/conclusions/pending");
  } catch (err) {
    showError($("conclusion-error"), err);
    return;
  }
  const rows = [...data.overdue.map((d) => [d, true]), ...data.pending.map((d) => [d, false])];
  $("pending-empty").hidden = rows.length > 0;
  $("conclusions-pending").replaceChildren(...rows.map(([d, overdue]) => pendingItem(d, overdue)));
}

function pendingItem(d, overdue) {
  const write = el("button", {
    type: "button",
    "data-testid": "pending-write",
    "aria-label": t("pending.write_label", { name: d.patient_name }),
    text: t("pending.write"),
  });
  write.addEventListener("click", () => {
    openConclusion(d.consultation_id, d.patient_name, d.draft_conclusion_id);
    $("conclusion-text").focus();
  });
  const li = el(
    "li",
    { class: `pending-item${overdue ? " is-overdue" : ""}`, "data-testid": "pending-item", "data-consultation-id": d.consultation_id },
    el("span", { class: "p-name", text: d.patient_name }),
    el("span", { class: "muted", text: t("pending.due", { time: localTime(d.due_at) }) }),
  );
  if (overdue) li.append(el("span", { class: "overdue", "data-testid": "overdue", text: t("pending.overdue") }));
  li.append(write);
  return li;
}

on("render", () => isDoctor() && loadPending());
on("enter", () => isDoctor() && loadPending());
