// The staff console (/console): login, the live connection and the desk. Each panel is its
// own module (queue, consultation, booking, day, doctor, follow-up, documents, second
// opinion); they share state.js and talk through its hooks.

import { connectLive } from "/static/js/live.js";
import { bindConsultation, closeCall } from "./consultation.js";
import { bindDay } from "./day.js";
import { bindDoctor, renderCountdown } from "./doctor.js";
import "./documents.js";
import "./quality.js";
import "./followup.js";
import { bindQueue, renderQueue, tickQueue, unlockSound, watch } from "./queue.js";
import "./booking.js";
import "./second_opinion.js";
import { $, api, fire, i18n, isConsultant, isDoctor, on, s, showError, t } from "./state.js";

function showScreen(name) {
  for (const sec of document.querySelectorAll("[data-screen]")) sec.hidden = sec.dataset.screen !== name;
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = event.target.querySelector("[role=alert]");
  showError(error, null);
  unlockSound(); // a user gesture: the queue sound may play later
  try {
    const session = await api.post("/auth/staff", { login: $("login-input").value.trim(), password: $("password-input").value });
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
  fire("render");
});
on("render-queue", renderQueue);

function leave() {
  closeCall();
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

async function enter() {
  s.me = await api.get("/me");
  document.body.dataset.role = isDoctor() ? "doctor" : s.me.role;
  for (const node of document.querySelectorAll(".doctor-only")) node.hidden = !isDoctor();
  for (const node of document.querySelectorAll(".consultant-only")) node.hidden = !isConsultant();
  for (const node of document.querySelectorAll(".specialist-only")) node.hidden = s.me.role !== "specialist";
  for (const node of document.querySelectorAll(".later")) node.hidden = true; // shown when they have content
  $("logout").hidden = false;
  renderWho();
  showScreen("desk");
  fire("enter");
  fire("current", null);
  connect();
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
    if (state === "connected") watch(); // every (re)connect re-syncs the queue
    if (state === "refused" && refusal?.code === "unauthorized") leave();
  });
  bindQueue(live);
  bindConsultation(live);
  bindDoctor(live);
  bindDay(live);
  fire("bind", live);
}

setInterval(() => {
  tickQueue();
  renderCountdown();
}, 1000);

if (api.session) {
  enter().catch(() => leave());
} else {
  showScreen("login");
}
