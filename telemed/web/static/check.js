// The connection check page (R-DEV): camera, microphone, bandwidth and a real WebRTC test
// call to the server, then the server's verdict per requirement. A plain ES module.

const API = "/api/v1/device-check";
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
    names: { os: "Операционная система", browser: "Браузер", camera: "Камера", microphone: "Микрофон", bandwidth: "Скорость интернета", test_call: "Пробный звонок" },
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
    names: { os: "Operating system", browser: "Browser", camera: "Camera", microphone: "Microphone", bandwidth: "Internet speed", test_call: "Test call" },
  },
};

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let lang = pickLanguage();
let token = takeToken();
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

async function api(method, path, body, extra = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), ...extra,
  });
  const data = response.headers.get("Content-Type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const error = new Error(data?.error?.message || response.statusText);
    error.code = data?.error?.code;
    error.retryAfter = Number(response.headers.get("Retry-After") || 0);
    throw error;
  }
  return data;
}

// --- camera and microphone -------------------------------------------------------------

async function openDevices(channel, config) {
  if (channel === "chat") return { stream: null, camera: null, microphone: false };
  const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  const [width, height] = config.min_video;
  const video = channel === "video" ? { width: { ideal: Math.max(1280, width) }, height: { ideal: Math.max(720, height) } } : false;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch (error) {
    if (!video) throw error;
    stream = await navigator.mediaDevices.getUserMedia({ audio }); // no camera: check the rest
  }
  const [camera] = stream.getVideoTracks();
  const settings = camera?.getSettings();
  $("preview").srcObject = stream;
  showLevel(stream);
  return {
    stream,
    camera: settings?.width ? { width: settings.width, height: settings.height } : null,
    microphone: stream.getAudioTracks().length > 0,
  };
}

let levelTimer = null;
let audioContext = null;
function showLevel(stream) {
  // The live microphone level, so the patient sees the microphone hears them.
  if (!stream.getAudioTracks().length || !window.AudioContext) return;
  audioContext = new AudioContext();
  const analyser = audioContext.createAnalyser();
  audioContext.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  levelTimer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    const rms = Math.sqrt(samples.reduce((sum, s) => sum + s * s, 0) / samples.length);
    $("level").value = Math.min(1, rms * 4);
  }, 100);
}

function closeDevices(stream) {
  clearInterval(levelTimer);
  audioContext?.close();
  audioContext = null;
  stream?.getTracks().forEach((track) => track.stop());
  $("preview").srcObject = null;
  $("level").value = 0;
}

// --- bandwidth: a small probe, then one sized for about a second at the speed seen -----

async function probeDown(size) {
  const response = await fetch(`${API}/probe?bytes=${size}`, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  if (!response.ok) throw new Error(response.statusText);
  const began = performance.now(); // from the headers on: the body's time on the wire
  const got = (await response.arrayBuffer()).byteLength;
  return (got * 8) / (performance.now() - began); // bits per ms = kbit/s
}

async function probeUp(size) {
  const payload = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(payload.subarray(at, Math.min(size, at + 65536)));
  const result = await api("POST", `${API}/probe`, undefined, { body: payload, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/octet-stream" } });
  return result.kbps;
}

async function measureBandwidth(config) {
  const cap = config.probe_max_bytes;
  const sized = (kbps) => Math.max(65536, Math.min(cap, Math.round((kbps * 1000) / 8)));
  let down = await probeDown(65536);
  down = await probeDown(sized(down));
  let up = await probeUp(65536);
  up = await probeUp(sized(up));
  return { down, up, kbps: Math.min(down, up) };
}

// --- the test call ------------------------------------------------------------------------

async function testCall(stream, config) {
  const pc = new RTCPeerConnection({ iceServers: config.ice_servers });
  for (const track of stream.getTracks()) {
    if (track.kind === "video") track.contentHint = "detail"; // keep the resolution, drop frames instead
    pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  for (let attempt = 0; ; attempt++) {
    try {
      const answer = await api("POST", `${API}/call`, { type: "offer", sdp: pc.localDescription.sdp });
      activeCall = answer.call_id;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      for (const sender of pc.getSenders()) {
        if (sender.track?.kind !== "video") continue;
        const parameters = sender.getParameters();
        parameters.degradationPreference = "maintain-resolution";
        await sender.setParameters(parameters).catch(() => {});
      }
      return { pc, callId: answer.call_id };
    } catch (error) {
      if (error.code !== "check_busy" || attempt >= 2) { pc.close(); throw error; }
      const seconds = error.retryAfter || 3;
      say(t("busy", { seconds }));
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    }
  }
}

function gathered(pc) {
  // No trickle: the offer carries every candidate (at most 3 s of gathering).
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
}

addEventListener("pagehide", () => {
  if (activeCall) fetch(`${API}/call/${activeCall}`, { method: "DELETE", keepalive: true, headers: { Authorization: `Bearer ${token}` } });
});

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
  heading.focus();
}

async function judge(body) {
  say(t("judging"));
  const verdict = await api("POST", `${API}?lang=${lang}`, body);
  lastBody = body;
  render(verdict);
  say("");
  return verdict;
}

async function run(channel) {
  running = true;
  $("start").disabled = true;
  $("result").hidden = true;
  delete $("result").dataset.verdict;
  let devices = { stream: null, camera: null, microphone: false };
  let call = null;
  try {
    const config = await api("GET", `${API}/config`);
    if (channel !== "chat") {
      say(t("asking"));
      try {
        devices = await openDevices(channel, config);
      } catch (error) {
        say(t("no_devices", { message: error.message }));
      }
    }
    say(t("speed"));
    const speed = await measureBandwidth(config);
    const body = {
      channel,
      user_agent: navigator.userAgent,
      camera: devices.camera,
      microphone: devices.microphone,
      bandwidth_kbps: Math.round(speed.kbps),
    };
    if (devices.stream) {
      say(t("calling"));
      try {
        call = await testCall(devices.stream, config);
        body.call_id = call.callId;
      } catch (error) {
        say(t("error", { message: error.message }));
      }
    }
    await judge(body); // with a call_id the server answers once the call has been measured
  } catch (error) {
    say(t("error", { message: error.message }));
  } finally {
    activeCall = null;
    call?.pc.close();
    closeDevices(devices.stream);
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
