// The staff console (/console): login; the live queue with accept; the call screen;
// the consultant's transfer, close, identify / register / book; the doctor's countdown to
// the limit, end of leg, conclusion form and pending / overdue conclusions.

import { ApiError, createApi } from "/static/js/api.js";
import { mountCall } from "/static/js/call.js";
import { setupI18n } from "/static/js/i18n.js";
import { connectLive } from "/static/js/live.js";
import { STRINGS } from "./strings.js";

const i18n = setupI18n(STRINGS);
const { t } = i18n;
const api = createApi({ storageKey: "telemed.console" });
const $ = (id) => document.getElementById(id);
const DOCTORS = new Set(["therapist", "paediatrician", "specialist", "psychologist"]);
const TARGET_MINUTES = 5; // R-URG-2, shown next to the past-target mark

const s = {
  me: null,
  live: null,
  items: [], // the last queue snapshot
  itemsAt: 0, // when it arrived (performance.now())
  hadSnapshot: false,
  serverOffset: 0, // server clock minus ours, from the queue snapshots (ms)
  known: new Map(), // consultation id -> {patient_id, patient_name, age, channel}
  current: null, // the consultation I am with: its last consultation:state
  call: null, // {id, handle}
  conclusionFor: null, // {consultation_id, name}
  bookFor: null, // {patient_id, name}
  found: null,
  audio: null,
};

// --- small helpers ---------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children);
  return node;
}

function showError(node, err) {
  if (!err) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  const code = err instanceof ApiError ? err.code : "error";
  const known = t(`errors.${code}`);
  node.textContent = known !== `errors.${code}` ? known : err.message || code;
  node.hidden = false;
}

function mmss(seconds) {
  const v = Math.max(0, Math.round(seconds));
  const m = Math.floor(v / 60);
  return `${m}:${String(v % 60).padStart(2, "0")}`;
}

function serverNow() {
  return Date.now() + s.serverOffset;
}

function localTime(iso) {
  return new Date(iso).toLocaleString(i18n.lang, { dateStyle: "short", timeStyle: "short" });
}

function isDoctor() {
  return DOCTORS.has(s.me?.role);
}

function myActiveState() {
  return isDoctor() ? "with_doctor" : "with_consultant";
}

function showScreen(name) {
  for (const sec of document.querySelectorAll("[data-screen]")) sec.hidden = sec.dataset.screen !== name;
}

// --- login -------------------------------------------------------------------------------

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = event.target.querySelector("[role=alert]");
  showError(error, null);
  unlockSound(); // a user gesture: the queue sound may play later
  try {
    const session = await api.post("/auth/staff", {
      login: $("login-input").value.trim(),
      password: $("password-input").value,
    });
    if (session.role === "patient") {
      error.textContent = t("login.patient");
      error.hidden = false;
      return;
    }
    api.setSession(session);
    $("password-input").value = "";
    await enter();
  } catch (err) {
    showError(error, err);
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await api.post("/auth/logout");
  } catch {
    /* the session ends here either way */
  }
  leave();
});

window.addEventListener("telemed:session-expired", () => leave());

for (const lang of ["ru", "en"]) {
  document.querySelector(`[data-testid=lang-${lang}]`).addEventListener("click", () => i18n.setLang(lang));
}
i18n.onChange(() => {
  renderWho();
  renderQueue();
  renderCurrent();
  if (isDoctor()) loadPending();
});

function leave() {
  s.call?.handle.destroy();
  s.call = null;
  s.live?.close();
  s.live = null;
  s.me = null;
  s.current = null;
  api.clearSession();
  $("who").hidden = true;
  $("logout").hidden = true;
  $("live-state").hidden = true;
  showScreen("login");
}

// --- the desk ----------------------------------------------------------------------------

async function enter() {
  s.me = await api.get("/me");
  document.body.dataset.role = isDoctor() ? "doctor" : s.me.role;
  for (const node of document.querySelectorAll(".doctor-only")) node.hidden = !isDoctor();
  for (const node of document.querySelectorAll(".consultant-only")) node.hidden = s.me.role !== "consultant";
  $("limit").hidden = true;
  $("conclusion-panel").hidden = !isDoctor();
  $("logout").hidden = false;
  renderWho();
  showScreen("desk");
  renderCurrent();
  connect();
  if (isDoctor()) loadPending();
  if (s.me.role === "consultant") loadDoctors();
}

function renderWho() {
  if (!s.me) return;
  $("who").textContent = `${s.me.full_name} · ${t(`roles.${s.me.role}`)}`;
  $("who").hidden = false;
}

function connect() {
  const live = connectLive(api.session.token);
  s.live = live;
  live.onState((state, refusal) => {
    const line = $("live-state");
    line.hidden = state === "connected";
    line.dataset.state = state;
    line.textContent = t(`live.${state}`, { message: refusal?.message || refusal?.code || "" });
    if (state === "connected") watch();
    if (state === "refused" && ["unauthorized", "taken_over"].includes(refusal?.code)) {
      if (refusal.code === "unauthorized") leave();
    }
  });
  live.on("queue:update", (p) => renderQueueItems(p.items || []));
  live.on("consultation:state", onConsultationState);
  live.on("consultation:closed", onClosed);
  live.on("limit:warning", (p) => {
    if (p.consultation_id !== s.current?.consultation_id) return;
    const warn = $("limit-warning");
    warn.textContent = t("doctor.warning", { time: new Date(p.ends_at).toLocaleTimeString(i18n.lang, { hour: "2-digit", minute: "2-digit" }) });
    warn.hidden = false;
  });
  live.on("limit:reached", (p) => {
    if (p.consultation_id !== s.current?.consultation_id) return;
    const warn = $("limit-warning");
    warn.textContent = t("doctor.reached");
    warn.hidden = false;
  });
}

async function watch() {
  try {
    const ack = await s.live.request("queue:watch", {});
    renderQueueItems(ack.items || []);
  } catch (err) {
    showError($("queue-error"), err);
  }
}

// --- queue -------------------------------------------------------------------------------

function renderQueueItems(items) {
  const wasEmpty = s.items.length === 0;
  s.items = items;
  s.itemsAt = performance.now();
  for (const item of items) {
    s.known.set(item.consultation_id, {
      patient_id: item.patient_id,
      patient_name: item.patient_name,
      age: item.age,
      channel: item.channel,
    });
  }
  if (items.length) {
    const first = items[0];
    s.serverOffset = Date.parse(first.queued_at) + first.waited_seconds * 1000 - Date.now();
  }
  if (s.hadSnapshot && wasEmpty && items.length) arrivalAlert();
  if (!items.length) $("queue-alert").hidden = true;
  s.hadSnapshot = true;
  renderQueue();
}

function arrivalAlert() {
  const alert = $("queue-alert");
  alert.hidden = false;
  document.title = `● ${t("queue.alert")}`;
  beep();
}

function dismissAlert() {
  $("queue-alert").hidden = true;
  document.title = t("title");
}

function renderQueue() {
  const list = $("queue");
  const since = (performance.now() - s.itemsAt) / 1000;
  $("queue-count").textContent = String(s.items.length);
  $("queue-empty").hidden = s.items.length > 0;
  $("accept-next").disabled = s.items.length === 0 || Boolean(s.current);
  const focused = document.activeElement?.dataset?.consultationId;
  list.replaceChildren(
    ...s.items.map((item) => {
      const waited = item.waited_seconds + since;
      const meta = el("p", { class: "q-meta" });
      meta.append(
        el("span", { class: "q-wait", "data-testid": "queue-wait", text: t("queue.waited", { time: mmss(waited) }) }),
        el("span", { class: "q-age", text: t("queue.age", { age: item.age }) }),
        el("span", { class: `q-channel ch-${item.channel}`, text: t(`channel.${item.channel}`) }),
        el("span", { class: "q-kind", text: t(`queue.kind.${item.kind}`) }),
      );
      if (item.past_target) {
        meta.prepend(el("span", { class: "past-target", "data-testid": "past-target", text: `⚠ ${t("queue.past_target", { minutes: TARGET_MINUTES })}` }));
      }
      const check = item.device_check;
      let checkText = t("queue.check_none");
      let checkClass = "q-check none";
      if (check) {
        checkText = check.ok ? t("queue.check_ok") : t("queue.check_failed", { failing: (check.failing || []).join(", ") });
        checkClass = `q-check ${check.ok ? "ok" : "bad"}`;
        if (check.camera_failed) checkText += ` · ${t("queue.camera_failed")}`;
      }
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
      const li = el(
        "li",
        { class: `queue-item${item.past_target ? " is-late" : ""}`, "data-testid": "queue-item", "data-consultation-id": item.consultation_id },
        el("div", { class: "q-main" }, el("p", { class: "q-name" }, el("strong", { text: `${item.position}. ${item.patient_name}` })), meta, el("p", { class: checkClass, "data-testid": "device-check", text: checkText })),
        accept,
      );
      return li;
    }),
  );
  if (focused) list.querySelector(`button[data-consultation-id="${focused}"]`)?.focus();
}

setInterval(() => {
  if (s.items.length) {
    const since = (performance.now() - s.itemsAt) / 1000;
    const waits = document.querySelectorAll("#queue [data-testid=queue-wait]");
    s.items.forEach((item, i) => {
      if (waits[i]) waits[i].textContent = t("queue.waited", { time: mmss(item.waited_seconds + since) });
    });
  }
  renderCountdown();
}, 1000);

async function accept_(consultationId) {
  dismissAlert();
  showError($("queue-error"), null);
  try {
    const payload = consultationId ? { consultation_id: consultationId } : {};
    await s.live.request("consultation:accept", payload);
  } catch (err) {
    showError($("queue-error"), err);
  }
}
$("accept-next").addEventListener("click", () => accept_(null));
$("queue-alert").addEventListener("click", dismissAlert);

// --- the consultation I am with ----------------------------------------------------------

function nameOf(p) {
  return p?.counterpart?.name || s.known.get(p?.consultation_id)?.patient_name || "";
}

function onConsultationState(p) {
  const id = p.consultation_id;
  const prev = s.current;
  if (p.state === myActiveState()) {
    const back = prev?.consultation_id === id && prev.state !== p.state;
    s.current = p;
    $("work-handed").hidden = true;
    if (!s.call || s.call.id !== id) openCall(p);
    if (back || (!isDoctor() && s.handedOver === id)) {
      $("work-handed").textContent = t("work.back", { name: nameOf(p) });
      $("work-handed").hidden = false;
      s.handedOver = null;
    }
    showError($("work-error"), null);
  } else if (prev?.consultation_id === id || s.call?.id === id) {
    // The patient moved on from me: to the doctor (consultant) or back (doctor).
    closeCall();
    s.current = null;
    const line = $("work-handed");
    if (isDoctor()) {
      line.textContent = t("work.leg_ended", { name: nameOf(p) });
      openConclusion(id, nameOf(p));
      loadPending();
    } else {
      line.textContent = t("work.handed", { name: nameOf(p) });
      s.handedOver = id;
    }
    line.hidden = false;
  }
  renderCurrent();
  renderQueue();
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
  line.textContent = p.reason === "finished" ? t("work.closed", { name }) : t("work.left", { reason: p.reason });
  line.hidden = false;
  renderCurrent();
  renderQueue();
  if (isDoctor()) loadPending();
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
    onHangup: () => (isDoctor() ? endLeg() : closeConsultation()),
  });
  s.call = { id: p.consultation_id, handle };
  const known = s.known.get(p.consultation_id);
  if (known && s.me.role === "consultant") setBookFor({ patient_id: known.patient_id, name: known.patient_name });
}

function closeCall() {
  s.call?.handle.destroy();
  s.call = null;
  if ($("confirm-dialog").open) $("confirm-dialog").close(); // nothing left to hang up
}

function renderCurrent() {
  const p = s.current;
  $("work-idle").hidden = Boolean(p) || !$("work-handed").hidden;
  $("work-current").hidden = !p;
  if (!p) {
    $("limit").hidden = true;
    return;
  }
  const known = s.known.get(p.consultation_id);
  $("current-name").textContent = nameOf(p);
  const bits = [];
  if (known?.age != null) bits.push(t("queue.age", { age: known.age }));
  bits.push(t(`channel.${p.channel}`), t(`queue.kind.${p.kind}`));
  $("current-meta").textContent = bits.join(" · ");
  $("current-state").textContent = t(`state.${p.state}`);
  $("limit").hidden = !(isDoctor() && p.limit_ends_at);
  if ($("limit").hidden) $("limit-warning").hidden = true;
  renderCountdown();
}

function renderCountdown() {
  const p = s.current;
  if (!p?.limit_ends_at || !isDoctor()) return;
  const left = (Date.parse(p.limit_ends_at) - serverNow()) / 1000;
  const node = $("limit-countdown");
  node.textContent = mmss(left);
  node.classList.toggle("is-low", left < 300);
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

/** Ask in an in-page modal dialog (Esc or Cancel says no; focus starts on Cancel). */
function confirmAction(kind) {
  const dialog = $("confirm-dialog");
  const name = nameOf(s.current);
  $("confirm-title").textContent = t(`confirm.${kind}_title`);
  $("confirm-text").textContent = t(`confirm.${kind}_text`, { name });
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
    await act(() => s.live.request("consultation:close", { consultation_id: id, outcome: "finished" }));
  } else {
    await act(() => s.live.request("consultation:transfer", { consultation_id: id, to: "consultant" }));
  }
}
const closeConsultation = () => hangUp("close");
const endLeg = () => hangUp("end");
$("close-consultation").addEventListener("click", closeConsultation);
$("end-leg").addEventListener("click", endLeg);

// --- doctor: conclusions -----------------------------------------------------------------

async function openConclusion(consultationId, name, draftId = null) {
  s.conclusionFor = { consultation_id: consultationId, name };
  $("conclusion-for").textContent = t("conclusion.for", { name });
  $("conclusion-status").textContent = "";
  showError($("conclusion-error"), null);
  if (draftId) {
    try {
      const draft = await api.get(`/conclusions/${draftId}`);
      $("conclusion-text").value = draft.text;
      $("conclusion-recommendations").value = draft.recommendations;
    } catch (err) {
      showError($("conclusion-error"), err);
    }
  } else {
    $("conclusion-text").value = "";
    $("conclusion-recommendations").value = "";
  }
}

async function writeConclusion(sign) {
  const status = $("conclusion-status");
  const error = $("conclusion-error");
  showError(error, null);
  if (!s.conclusionFor) {
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
    await api.post(`/consultations/${s.conclusionFor.consultation_id}/conclusion`, body);
    status.textContent = t(sign ? "conclusion.signed" : "conclusion.saved");
    status.dataset.status = sign ? "signed" : "draft";
    loadPending();
  } catch (err) {
    showError(error, err);
  }
}
$("conclusion-save").addEventListener("click", () => writeConclusion(false));
$("conclusion-sign").addEventListener("click", () => writeConclusion(true));

async function loadPending() {
  let data;
  try {
    data = await api.get("/conclusions/pending");
  } catch (err) {
    showError($("conclusion-error"), err);
    return;
  }
  const list = $("conclusions-pending");
  const rows = [...data.overdue.map((d) => [d, true]), ...data.pending.map((d) => [d, false])];
  $("pending-empty").hidden = rows.length > 0;
  list.replaceChildren(
    ...rows.map(([d, overdue]) => {
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
    }),
  );
}

// --- consultant: identify, register, book ------------------------------------------------

function toolsStatus(text) {
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
  s.found = p;
  $("found-text").textContent = t("tools.found", {
    name: p.full_name,
    age: p.age,
    policy: p.policy_number,
    active: t(p.policy_active ? "tools.active" : "tools.inactive"),
    phone: p.masked_phone,
  });
  $("found").hidden = false;
  setBookFor({ patient_id: p.patient_id, name: p.full_name });
}

$("identify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("tools-error"), null);
  toolsStatus("");
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
    const body = { ...identifyBody(), sex: $("register-sex").value };
    showFound(await api.post("/patients", body));
    $("register-form").hidden = true;
    toolsStatus(t("tools.registered"));
  } catch (err) {
    showError($("tools-error"), err);
  }
});

$("send-login-code").addEventListener("click", async () => {
  showError($("tools-error"), null);
  try {
    await api.post(`/patients/${s.found.patient_id}/login-code`);
    toolsStatus(t("tools.code_sent"));
  } catch (err) {
    showError($("tools-error"), err);
  }
});

function setBookFor(target) {
  s.bookFor = target;
  const form = $("book-form");
  form.hidden = false;
  form.querySelector("h3").textContent = t("tools.book_for", { name: target.name });
}

async function loadDoctors() {
  try {
    const { doctors } = await api.get("/doctors");
    $("book-doctor").replaceChildren(
      ...doctors.map((d) => el("option", { value: d.doctor_id, text: `${d.name} — ${t(`roles.${d.role}`)}` })),
    );
  } catch (err) {
    showError($("tools-error"), err);
  }
}

$("book-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("tools-error"), null);
  if (!s.bookFor) return;
  try {
    const starts = new Date($("book-time").value);
    const booked = await api.post("/appointments", {
      patient_id: s.bookFor.patient_id,
      doctor_id: $("book-doctor").value,
      starts_at: starts.toISOString(),
      channel: $("book-channel").value,
      kind: "scheduled",
      requires_documents: $("book-documents").checked,
    });
    toolsStatus(t("tools.booked", { time: localTime(booked.starts_at || starts.toISOString()) }));
  } catch (err) {
    showError($("tools-error"), err);
  }
});

// --- the sound of a patient arriving in an empty queue -----------------------------------

function unlockSound() {
  try {
    s.audio ||= new AudioContext();
    s.audio.resume?.();
  } catch {
    s.audio = null;
  }
}

function beep() {
  const ctx = s.audio;
  if (!ctx) return;
  try {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.0001, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.2, ctx.currentTime + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.6);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.65);
    document.body.dataset.beeped = String(Number(document.body.dataset.beeped || 0) + 1);
  } catch (err) {
    console.info("console: no sound", err);
  }
}

document.addEventListener("pointerdown", unlockSound, { once: true });
document.addEventListener("keydown", unlockSound, { once: true });

// --- start -------------------------------------------------------------------------------

if (api.session) {
  enter().catch(() => leave());
} else {
  showScreen("login");
}
