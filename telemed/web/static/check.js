// The connection check page (R-DEV): camera, microphone, bandwidth and a real WebRTC test
// call to the server, then the server's verdict per requirement. A plain ES module.

import { checkClient, levelMeter, runCheck } from "/static/js/devicecheck.js";

const TEXTS = {
  ru: {
    title: "Проверка связи",
    intro: "Проверим камеру, микрофон и интернет перед консультацией: короткий пробный звонок на наш сервер покажет, что видео и звук доходят.",
    login: "Войдите в приложение пациента, затем откройте проверку снова.",
    channel: "Как вы хотите общаться с врачом?",
    video: "Видео", audio: "Аудио", chat: "Чат",
    start: "Начать проверку", again: "Проверить ещё раз",
    preview: "Ваша камера и микрофон",
    camera_preview: "Изображение с камеры",
    level: "Громкость микрофона",
    switch_to: "English", switch_label: "Switch to English",
    asking: "Разрешите браузеру доступ к камере и микрофону…",
    no_devices: "Камера или микрофон недоступны: {message}",
    speed: "Измеряем скорость интернета…",
    calling: "Пробный звонок: говорите что-нибудь, смотрите в камеру…",
    busy: "Сервер занят другими проверками, повторим через {seconds} с…",
    judging: "Подводим итог…",
    ok: "Всё готово к консультации",
    fail: "Есть проблемы: посмотрите советы ниже",
    required: "Нужно", actual: "У вас", pass: "✓ в порядке", failed: "✗ не подходит",
    error: "Проверка не удалась: {message}",
    hotline: "Если связь не наладится, позвоните медицинскому консультанту:",
    names: { os: "Операционная система", browser: "Браузер", camera: "Камера", microphone: "Микрофон", bandwidth: "Скорость интернета", test_call: "Пробный звонок", turn: "Ретранслятор (TURN)" },
  },
  en: {
    title: "Connection check",
    intro: "We check your camera, microphone and internet before the consultation: a short test call to our server shows that video and sound get through.",
    login: "Log in to the patient app, then open the check again.",
    channel: "How do you want to talk to the doctor?",
    video: "Video", audio: "Audio", chat: "Chat",
    start: "Start the check", again: "Check again",
    preview: "Your camera and microphone",
    camera_preview: "Camera picture",
    level: "Microphone volume",
    switch_to: "Русский", switch_label: "Переключить на русский",
    asking: "Allow the browser to use the camera and microphone…",
    no_devices: "The camera or microphone is not available: {message}",
    speed: "Measuring the internet speed…",
    calling: "Test call: say something and look at the camera…",
    busy: "The server is busy with other checks; retrying in {seconds} s…",
    judging: "Summing up…",
    ok: "Everything is ready for the consultation",
    fail: "There are problems: see the advice below",
    required: "Needed", actual: "Yours", pass: "✓ fine", failed: "✗ not enough",
    error: "The check failed: {message}",
    hotline: "If the connection does not work, call the medical consultant:",
    names: { os: "Operating system", browser: "Browser", camera: "Camera", microphone: "Microphone", bandwidth: "Internet speed", test_call: "Test call", turn: "Relay server (TURN)" },
  },
};

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let lang = pickLanguage();
let token = takeToken();
const client = checkClient(token);
let lastBody = null;
let activeCall = null;
let running = false;

function pickLanguage() {
  const asked = params.get("lang") || localStorage.getItem("telemed.lang") || "ru";
  return asked in TEXTS ? asked : "ru";
}

function takeToken() {
  // A token in the address (a link from the patient app) is kept and removed from the address.
  const given = params.get("token");
  if (given) {
    localStorage.setItem("telemed.token", given);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }
  return localStorage.getItem("telemed.token");
}

function t(key, values = {}) {
  return TEXTS[lang][key].replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

function say(message) {
  $("status").textContent = message;
}

// R-FALLBACK-1: the hotline (clinic.hotline, served by GET /api/v1/config) shows whenever the
// check fails or cannot run, so a patient without a working connection can still call.
let hotline = "";
fetch("/api/v1/config").then((r) => (r.ok ? r.json() : null)).then((config) => {
  hotline = config?.hotline || "";
  const link = $("hotline-number");
  link.textContent = hotline;
  link.href = `tel:${hotline.replace(/[^+\d]/g, "")}`;
  if (!token) showHotline(true);
}).catch(() => {});

function showHotline(shown) {
  $("hotline").hidden = !(shown && hotline);
}

function applyLanguage() {
  document.documentElement.lang = lang;
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  for (const node of document.querySelectorAll("[data-t-label]")) node.setAttribute("aria-label", t(node.dataset.tLabel));
  const button = $("lang");
  button.textContent = t("switch_to");
  button.lang = lang === "ru" ? "en" : "ru";
  button.setAttribute("aria-label", t("switch_label"));
}

// --- the verdict ----------------------------------------------------------------------------

function render(verdict) {
  const result = $("result");
  const list = $("checks");
  list.replaceChildren();
  for (const check of verdict.checks) {
    const item = document.createElement("li");
    item.dataset.check = check.name;
    item.dataset.ok = String(check.ok);
    const title = document.createElement("strong");
    title.textContent = `${TEXTS[lang].names[check.name] || check.name}: `;
    const mark = document.createElement("span");
    mark.className = "mark";
    mark.textContent = check.ok ? t("pass") : t("failed");
    const facts = document.createElement("div");
    facts.textContent = `${t("actual")}: ${check.actual}. ${t("required")}: ${check.required}.`;
    item.append(title, mark, facts);
    if (check.advice) {
      const advice = document.createElement("p");
      advice.className = "advice";
      advice.textContent = check.advice;
      item.append(advice);
    }
    list.append(item);
  }
  const heading = $("verdict");
  heading.textContent = verdict.ok ? t("ok") : t("fail");
  result.dataset.verdict = verdict.ok ? "ok" : "fail";
  result.hidden = false;
  showHotline(!verdict.ok);
  heading.focus();
}

async function judge(body) {
  say(t("judging"));
  const verdict = await client.verdict(body, lang);
  lastBody = body;
  render(verdict);
  say("");
  return verdict;
}

addEventListener("pagehide", () => {
  if (activeCall) client.forget(activeCall);
});

let stopLevel = () => {};
function preview(stream) {
  stopLevel();
  $("preview").srcObject = stream;
  stopLevel = stream ? levelMeter(stream, (level) => { $("level").value = level; }) : () => {};
}

async function run(channel) {
  running = true;
  $("start").disabled = true;
  $("result").hidden = true;
  delete $("result").dataset.verdict;
  showHotline(false);
  try {
    const { verdict, body } = await runCheck(client, {
      channel,
      lang,
      say: (key, values) => say(t(key, values)),
      onStream: preview,
      onCall: (callId) => { activeCall = callId; },
    });
    lastBody = body;
    render(verdict);
    say("");
  } catch (error) {
    say(t("error", { message: error.message }));
    showHotline(true);
  } finally {
    running = false;
    $("start").disabled = false;
    $("start").dataset.t = "again";
    $("start").textContent = t("again");
  }
}

$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (running || !token) return;
  run(new FormData(event.target).get("channel"));
});

$("lang").addEventListener("click", async () => {
  lang = lang === "ru" ? "en" : "ru";
  localStorage.setItem("telemed.lang", lang);
  applyLanguage();
  if (!$("result").hidden && lastBody && !running) {
    try { await judge(lastBody); } catch (error) { say(t("error", { message: error.message })); }
  }
});

const chosen = params.get("channel");
if (chosen) for (const input of document.querySelectorAll("input[name=channel]")) input.checked = input.value === chosen;
applyLanguage();
if (!token) {
  $("login").hidden = false;
  $("start").disabled = true;
}
