// The call screen both pages use: remote and local video (audio calls show no camera),
// the state line, mute, camera off, hang up, and the chat (history on join, live
// messages, send, attach documents from the patient's card).
//
// mountCall(root, {live, api, t, consultationId, polite, channel, iceServers, onHangup,
//                  canAttach, legId}) -> {destroy(), connection}
// The call's path and quality (callquality.js) show under the state line once connected;
// a call not connected after 15 s says why; TURN credentials are renewed before they end.
// Pages merge CALL_STRINGS into their i18n dictionaries; without them the strings below
// are used in the page's language.

import { QUALITY_STRINGS, QualityLog, describe, level, watchQuality } from "./callquality.js";
import { el } from "./dom.js";
import { CallConnection } from "./rtc.js";

// A call still not connected after this long says so, and why (R-FALLBACK-1: with the
// hotline); the connection keeps trying meanwhile.
const CANNOT_CONNECT_MS = 15000;
const QUALITY_REPORT_MS = 10000; // the leg's summary goes to the server this often

export const CALL_STRINGS = {
  ru: {
    "call.connecting": "Соединение…",
    "call.connected": "Соединение установлено",
    "call.reconnecting": "Восстанавливаем соединение…",
    "call.failed": "Не удалось соединиться. Проверьте интернет.",
    "call.cannot_connect.relay_unreachable":
      "Звонок не соединяется: прямое соединение закрыто, а ретрансляционный сервер (TURN) недоступен из вашей сети. Отключите VPN или прокси, подключитесь к другой сети или позвоните на горячую линию.",
    "call.cannot_connect.peer_unreachable":
      "Звонок не соединяется: собеседник недоступен ни напрямую, ни через ретрансляционный сервер. Проверьте интернет или позвоните на горячую линию.",
    "call.cannot_connect.direct_blocked":
      "Звонок не соединяется: ваша сеть не пропускает прямое соединение. Отключите VPN или прокси, подключитесь к другой сети или позвоните на горячую линию.",
    "call.closed": "Звонок завершён",
    "call.peer_away": "Собеседник потерял связь, ждём…",
    "call.offline": "Нет связи с сервером, переподключаемся…",
    "call.chat_only": "Консультация в чате",
    "call.no_devices": "Нет доступа к камере или микрофону: разрешите его в браузере.",
    "call.remote_video": "Видео собеседника",
    "call.local_video": "Ваше видео",
    "call.mute": "Без звука",
    "call.camera_off": "Без камеры",
    "call.hangup": "Завершить",
    "call.chat": "Чат",
    "call.chat_log": "Сообщения",
    "call.chat_input": "Сообщение",
    "call.chat_send": "Отправить",
    "call.attach": "Документы",
    "call.attach_title": "Приложить документы из медкарты",
    "call.attach_none": "В медкарте пока нет документов",
    "call.attached": "Приложено: {n}",
    "call.send_failed": "Сообщение не отправлено: {message}",
    "call.you": "Вы",
    "role.patient": "Пациент",
    "role.consultant": "Консультант",
    "role.therapist": "Терапевт",
    "role.paediatrician": "Педиатр",
    "role.specialist": "Специалист",
    "role.psychologist": "Психолог",
    "role.system": "Система",
  },
  en: {
    "call.connecting": "Connecting…",
    "call.connected": "Connected",
    "call.reconnecting": "Reconnecting…",
    "call.failed": "Could not connect. Check your internet.",
    "call.cannot_connect.relay_unreachable":
      "The call cannot connect: the direct path is blocked and the relay server (TURN) cannot be reached from your network. Turn off VPN or proxy, use another network, or call the hotline.",
    "call.cannot_connect.peer_unreachable":
      "The call cannot connect: the other side cannot be reached, neither directly nor through the relay server. Check your internet or call the hotline.",
    "call.cannot_connect.direct_blocked":
      "The call cannot connect: your network blocks the direct path. Turn off VPN or proxy, use another network, or call the hotline.",
    "call.closed": "Call ended",
    "call.peer_away": "The other side lost connection, waiting…",
    "call.offline": "No connection to the server, reconnecting…",
    "call.chat_only": "Chat consultation",
    "call.no_devices": "No access to the camera or microphone: allow it in the browser.",
    "call.remote_video": "The other side's video",
    "call.local_video": "Your video",
    "call.mute": "Mute",
    "call.camera_off": "Camera off",
    "call.hangup": "Hang up",
    "call.chat": "Chat",
    "call.chat_log": "Messages",
    "call.chat_input": "Message",
    "call.chat_send": "Send",
    "call.attach": "Documents",
    "call.attach_title": "Attach documents from the medical card",
    "call.attach_none": "No documents in the medical card yet",
    "call.attached": "Attached: {n}",
    "call.send_failed": "Message not sent: {message}",
    "call.you": "You",
    "role.patient": "Patient",
    "role.consultant": "Consultant",
    "role.therapist": "Therapist",
    "role.paediatrician": "Paediatrician",
    "role.specialist": "Specialist",
    "role.psychologist": "Psychologist",
    "role.system": "System",
  },
};

for (const lang of ["ru", "en"]) Object.assign(CALL_STRINGS[lang], QUALITY_STRINGS[lang]);

/** Why a call has not connected: the TURN relay gave no candidate (unreachable), or it did
 * and the other side still cannot be reached, or there is no relay and the direct path
 * is blocked. */
function whyNotConnected(connection) {
  const relayed = connection.gatheredTypes.has("relay");
  if (connection.hasTurn && !relayed) return "relay_unreachable";
  if (relayed) return "peer_unreachable";
  return "direct_blocked";
}

/** When the TURN credentials of these ICE servers expire (ms since the epoch; the TURN
 * REST username is `expiry:user`), or null without TURN. */
function turnExpiry(servers) {
  const ends = (servers || [])
    .map((s) => Number(String(s.username || "").split(":")[0]) * 1000)
    .filter((ms) => Number.isFinite(ms) && ms > 0);
  return ends.length ? Math.min(...ends) : null;
}

function translator(t) {
  return (key, vars = {}) => {
    let text = t ? t(key, vars) : undefined;
    if (!text || text === key) {
      const lang = document.documentElement.lang === "en" ? "en" : "ru";
      text = CALL_STRINGS[lang][key] || key;
      for (const [name, value] of Object.entries(vars)) {
        text = text.replaceAll(`{${name}}`, String(value));
      }
    }
    return text;
  };
}

// Line icons drawn inline (no icon font to miss); a toggle's slash shows when it is pressed.
const ICONS = {
  mic: ["M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z", "M5 11a7 7 0 0 0 14 0M12 18v3"],
  camera: ["M3 8a1 1 0 0 1 1-1h10a1 1 0 0 1 1 1v8a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1z", "M15 11l6-3v8l-6-3"],
  hangup: ["M3 14.5c5-4.7 13-4.7 18 0l-2.3 2.6-3.2-1.4v-2.4a11 11 0 0 0-7 0v2.4l-3.2 1.4z"],
};

function icon(name, slash = false) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "call-icon");
  for (const d of [...ICONS[name], ...(slash ? ["M4 4l16 16"] : [])]) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    if (d === "M4 4l16 16") path.setAttribute("class", "call-slash");
    svg.append(path);
  }
  return svg;
}


export function mountCall(
  root,
  {
    live,
    api,
    t,
    consultationId,
    polite,
    channel = "video",
    iceServers = null,
    onHangup = null,
    canAttach = Boolean(polite), // documents of the patient's own card (the server's rule)
    myRole = polite ? "patient" : null,
    legId: initialLegId = null,
  },
) {
  const tr = translator(t);
  const media = { audio: channel !== "chat", video: channel === "video" };
  const withMedia = media.audio || media.video;

  const stateLine = el("p", { class: "call-state", "data-testid": "call-state", role: "status" });
  // The path and quality of the call, from getStats once a second (not a live region:
  // it changes every second; its level is in data-level for styling).
  const qualityLine = el("p", {
    class: "call-quality",
    "data-testid": "call-quality",
    "aria-label": tr("quality.label"),
  });
  qualityLine.hidden = true;
  const remoteVideo = el("video", {
    "data-testid": "remote-video",
    autoplay: true,
    playsinline: true,
    "aria-label": tr("call.remote_video"),
  });
  const localVideo = el("video", {
    "data-testid": "local-video",
    autoplay: true,
    playsinline: true,
    muted: true,
    "aria-label": tr("call.local_video"),
  });
  localVideo.muted = true;
  // Toggles keep their name ("Mute") and say their state with aria-pressed.
  const muteBtn = el(
    "button",
    { type: "button", class: "call-btn", "data-testid": "mute", "aria-pressed": "false" },
    icon("mic", true),
    el("span", { text: tr("call.mute") }),
  );
  const cameraBtn = el(
    "button",
    { type: "button", class: "call-btn", "data-testid": "camera-off", "aria-pressed": "false" },
    icon("camera", true),
    el("span", { text: tr("call.camera_off") }),
  );
  const hangupBtn = el(
    "button",
    { type: "button", class: "call-btn call-hangup", "data-testid": "hangup" },
    icon("hangup"),
    el("span", { text: tr("call.hangup") }),
  );
  const videos = el("div", { class: "call-videos" }, remoteVideo, localVideo);
  const controls = el("div", { class: "call-controls" }, muteBtn, cameraBtn, hangupBtn);
  if (!media.video) {
    videos.hidden = true;
    cameraBtn.hidden = true;
  }
  if (!media.audio) muteBtn.hidden = true;

  const logId = `chat-log-${consultationId}`;
  const chatLog = el("ol", {
    class: "chat-log",
    id: logId,
    "data-testid": "chat-log",
    "aria-live": "polite",
    "aria-label": tr("call.chat_log"),
    tabindex: "0",
  });
  const inputId = `chat-input-${consultationId}`;
  const chatInput = el("input", {
    id: inputId,
    type: "text",
    "data-testid": "chat-input",
    autocomplete: "off",
    maxlength: "4000",
  });
  const chatLabel = el("label", { for: inputId, class: "visually-hidden", text: tr("call.chat_input") });
  const sendBtn = el("button", { type: "submit", "data-testid": "chat-send", text: tr("call.chat_send") });
  const attachBtn = el("button", {
    type: "button",
    class: "chat-attach",
    "data-testid": "chat-attach",
    "aria-expanded": "false",
    "aria-controls": `chat-docs-${consultationId}`,
    text: tr("call.attach"),
  });
  attachBtn.hidden = !canAttach;
  const docsPanel = el("fieldset", { class: "chat-docs", id: `chat-docs-${consultationId}` });
  docsPanel.hidden = true;
  const attachedNote = el("span", { class: "chat-attached" });
  const chatError = el("p", { class: "chat-error", role: "alert", "data-testid": "error" });
  chatError.hidden = true;
  const form = el(
    "form",
    { class: "chat-form" },
    chatLabel,
    chatInput,
    sendBtn,
    attachBtn,
  );
  const chat = el(
    "section",
    { class: "call-chat", "aria-label": tr("call.chat") },
    el("h2", { class: "call-chat-title", text: tr("call.chat") }),
    chatLog,
    docsPanel,
    attachedNote,
    chatError,
    form,
  );
  const screen = el(
    "div",
    { class: `call call-${channel}`, "data-channel": channel },
    stateLine,
    qualityLine,
    videos,
    controls,
    chat,
  );
  root.replaceChildren(screen);

  // --- state line ---
  let rtcState = withMedia ? "connecting" : null;
  let peerAway = false;
  let offline = false;
  let cannotConnect = null; // why the call has not connected for CANNOT_CONNECT_MS
  let notConnectedTimer = null;
  function showState() {
    let key;
    let shown;
    if (offline) [key, shown] = ["call.offline", "offline"];
    else if (peerAway) [key, shown] = ["call.peer_away", "peer_away"];
    else if (cannotConnect && rtcState !== "connected" && rtcState !== "closed") {
      [key, shown] = [`call.cannot_connect.${cannotConnect}`, "failed"];
    } else if (rtcState) [key, shown] = [`call.${rtcState}`, rtcState];
    else [key, shown] = ["call.chat_only", "chat"];
    stateLine.textContent = tr(key);
    stateLine.dataset.state = shown;
    if (shown === "failed" && cannotConnect) stateLine.dataset.reason = cannotConnect;
    else delete stateLine.dataset.reason;
    screen.dataset.state = shown;
  }
  showState();
  /** Start the "cannot connect" clock while connecting; stop it once connected. */
  function watchConnecting() {
    if (rtcState === "connected" || rtcState === "closed") {
      clearTimeout(notConnectedTimer);
      notConnectedTimer = null;
      cannotConnect = null;
      return;
    }
    if (notConnectedTimer || cannotConnect) return;
    notConnectedTimer = setTimeout(() => {
      notConnectedTimer = null;
      if (!connection || rtcState === "connected" || peerAway || offline) return;
      cannotConnect = whyNotConnected(connection);
      console.info(`call: cannot connect (${cannotConnect})`);
      showState();
    }, CANNOT_CONNECT_MS);
  }

  // --- media ---
  let connection = null;
  if (withMedia) {
    connection = new CallConnection({
      live,
      consultationId,
      polite,
      iceServers: iceServers ?? live.iceServers ?? [],
      media,
      onState: (s) => {
        rtcState = s;
        if (s !== "connected") qualityLine.hidden = true;
        watchConnecting();
        showState();
      },
      onRemoteStream: (stream) => {
        remoteVideo.srcObject = stream;
        if (stream) remoteVideo.play().catch(() => {});
      },
    });
    connection
      .start()
      .then(() => {
        if (media.video && connection.localStream) {
          localVideo.srcObject = connection.localStream;
          localVideo.play().catch(() => {});
        }
      })
      .catch((err) => {
        console.warn("call: no devices", err);
        stateLine.textContent = tr("call.no_devices");
        stateLine.dataset.state = "no_devices";
      });
    watchConnecting();
  }

  // --- path and quality (getStats), and the leg's summary for the server ---
  let qualityLog = new QualityLog();
  let legId = null; // the leg the samples belong to (consultation:state's leg_id)
  const stopQuality = connection
    ? watchQuality(
        () => connection.pc,
        (sample) => {
          if (rtcState !== "connected") return;
          qualityLog.add(sample);
          qualityLine.hidden = false;
          qualityLine.textContent = describe(sample, tr);
          qualityLine.dataset.path = sample.path;
          qualityLine.dataset.relayProtocol = sample.relayProtocol || "";
          qualityLine.dataset.pair = `${sample.local}-${sample.remote}`;
          qualityLine.dataset.level = level(sample);
          qualityLine.dataset.rtt = String(Math.round(sample.rttMs ?? -1));
          qualityLine.dataset.loss = (sample.lossPercent || 0).toFixed(2);
          qualityLine.dataset.bitrate = String(Math.round(sample.bitrateKbps || 0));
          qualityLine.dataset.freezes = String(sample.freezes || 0);
        },
      )
    : () => {};
  let lastReported = 0;
  function reportQuality(final = false) {
    const summary = qualityLog.summary();
    if (!summary || !legId || !api?.post) return;
    if (!final && summary.seconds === lastReported) return;
    lastReported = summary.seconds;
    api
      .post(`/consultations/${consultationId}/quality`, { leg_id: legId, final, ...summary })
      .catch((err) => console.info("call: quality not reported", err?.code || err));
  }
  const reportTimer = connection ? setInterval(() => reportQuality(false), QUALITY_REPORT_MS) : null;
  /** A new leg (a transfer): the old one's summary goes out, the new one starts empty. */
  function newLeg(id) {
    if (id === legId) return;
    if (legId) reportQuality(true);
    legId = id || null;
    qualityLog = new QualityLog();
    lastReported = 0;
  }

  // --- fresh TURN credentials before the handed-out ones expire (ice:renew) ---
  let renewTimer = null;
  function planRenewal(servers) {
    clearTimeout(renewTimer);
    const ends = turnExpiry(servers);
    if (!connection || ends === null) return;
    const wait = Math.max(5000, (ends - Date.now()) * 0.8);
    renewTimer = setTimeout(async () => {
      try {
        const fresh = await live.request("ice:renew", {});
        connection.updateIceServers(fresh.ice_servers, qualityLine.dataset.path === "relay");
        planRenewal(fresh.ice_servers);
      } catch (err) {
        console.info("call: ICE servers not renewed", err?.code || err);
        renewTimer = setTimeout(() => planRenewal(servers), 10000);
      }
    }, Math.min(wait, 2 ** 31 - 1));
  }
  if (connection) planRenewal(connection.iceServers);

  let muted = false;
  muteBtn.addEventListener("click", () => {
    muted = !muted;
    connection?.setMuted(muted);
    muteBtn.setAttribute("aria-pressed", String(muted));
  });
  let cameraOff = false;
  cameraBtn.addEventListener("click", () => {
    cameraOff = !cameraOff;
    connection?.setCameraOff(cameraOff);
    cameraBtn.setAttribute("aria-pressed", String(cameraOff));
    localVideo.classList.toggle("is-off", cameraOff);
  });
  hangupBtn.addEventListener("click", () => {
    if (onHangup) onHangup();
    else destroy();
  });

  // --- chat ---
  const seen = new Set();
  // R-SECOND: the delivered conclusion's link (/#/conclusions/ID) opens it; the rest is text.
  function chatText(text) {
    const span = el("span", { class: "chat-text" });
    const parts = String(text ?? "").split(/(\/#\/conclusions\/[\w-]+)/);
    for (const part of parts) {
      if (/^\/#\/conclusions\/[\w-]+$/.test(part)) {
        span.append(el("a", { href: part, "data-testid": "chat-conclusion-link", text: part }));
      } else if (part) span.append(document.createTextNode(part));
    }
    return span;
  }
  function addMessage(m) {
    if (m.consultation_id && m.consultation_id !== consultationId) return;
    if (seen.has(m.message_id)) return;
    seen.add(m.message_id);
    const mine = myRole ? m.sender_role === myRole : m.sender_role !== "patient";
    const who = mine ? tr("call.you") : tr(`role.${m.sender_role}`);
    const time = new Date(m.created_at).toLocaleTimeString(document.documentElement.lang, {
      hour: "2-digit",
      minute: "2-digit",
    });
    const item = el(
      "li",
      { class: `chat-message${mine ? " is-mine" : ""}`, "data-testid": "chat-message" },
      el("span", { class: "chat-meta", text: `${who} · ${time}` }),
      chatText(m.text),
    );
    if (m.documents?.length) {
      const list = el("ul", { class: "chat-files" });
      for (const d of m.documents) {
        list.append(el("li", { "data-document-id": d.document_id, text: `📎 ${d.filename}` }));
      }
      item.append(list);
    }
    chatLog.append(item);
    chatLog.scrollTop = chatLog.scrollHeight;
  }
  const onMessage = (m) => addMessage(m);
  const onHistory = (h) => {
    if (h?.consultation_id === consultationId) for (const m of h.messages || []) addMessage(m);
  };
  live.on("chat:message", onMessage);
  live.on("chat:history", onHistory);
  live
    .request("chat:history", { consultation_id: consultationId })
    .then((ack) => {
      for (const m of ack?.messages || []) addMessage(m);
    })
    .catch((err) => console.info("call: no chat history", err?.code || err));

  let chosen = new Set();
  function showChosen() {
    attachedNote.textContent = chosen.size ? tr("call.attached", { n: chosen.size }) : "";
  }
  attachBtn.addEventListener("click", async () => {
    const open = docsPanel.hidden;
    docsPanel.hidden = !open;
    attachBtn.setAttribute("aria-expanded", String(open));
    if (!open) return;
    docsPanel.replaceChildren(el("legend", { text: tr("call.attach_title") }));
    let items = [];
    try {
      items = (await api.get("/documents")).items || [];
    } catch (err) {
      console.warn("call: documents not listed", err);
    }
    if (!items.length) docsPanel.append(el("p", { text: tr("call.attach_none") }));
    for (const d of items) {
      const id = `chat-doc-${consultationId}-${d.document_id}`;
      const box = el("input", { type: "checkbox", id, value: d.document_id });
      box.checked = chosen.has(d.document_id);
      box.addEventListener("change", () => {
        if (box.checked) chosen.add(d.document_id);
        else chosen.delete(d.document_id);
        showChosen();
      });
      docsPanel.append(el("div", { class: "chat-doc" }, box, el("label", { for: id, text: d.filename })));
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = chatInput.value.trim();
    if (!text && !chosen.size) return;
    sendBtn.disabled = true;
    chatError.hidden = true;
    try {
      const payload = { consultation_id: consultationId, text };
      if (chosen.size) payload.document_ids = [...chosen];
      await live.request("chat:send", payload);
      chatInput.value = "";
      chosen = new Set();
      showChosen();
      docsPanel.hidden = true;
      attachBtn.setAttribute("aria-expanded", "false");
    } catch (err) {
      chatError.textContent = tr("call.send_failed", { message: err?.message || err });
      chatError.hidden = false;
    } finally {
      sendBtn.disabled = false;
      chatInput.focus();
    }
  });

  // --- the other side and the server ---
  const mine = (p) => p?.consultation_id === consultationId;
  const onSignal = (p) => {
    if (mine(p)) connection?.handleSignal(p.data);
  };
  const onHangupEvent = (p) => {
    // The counterpart changed (a transfer): start over and wait for the new one's offer.
    if (mine(p)) connection?.renew();
  };
  const onAway = (p) => {
    if (!mine(p)) return;
    peerAway = true;
    showState();
  };
  const onRejoined = (p) => {
    if (!mine(p)) return;
    peerAway = false;
    showState();
    if (!polite) connection?.renew(); // the staff side offers again, on a fresh connection
  };
  const onConsultationState = (p) => {
    if (mine(p) && p.leg_id) newLeg(p.leg_id);
  };
  const onLiveState = (s) => {
    offline = s === "reconnecting" || s === "connecting";
    showState();
  };
  live.on("signal", onSignal);
  live.on("call:hangup", onHangupEvent);
  live.on("peer:away", onAway);
  live.on("peer:rejoined", onRejoined);
  live.on("peer:replaced", onRejoined); // a newer tab of the patient: the same fresh start
  live.on("consultation:state", onConsultationState);
  if (initialLegId) newLeg(initialLegId);
  const unState = live.onState ? live.onState(onLiveState) : null;

  let destroyed = false;
  function destroy() {
    if (destroyed) return;
    destroyed = true;
    live.off("chat:message", onMessage);
    live.off("chat:history", onHistory);
    live.off("signal", onSignal);
    live.off("call:hangup", onHangupEvent);
    live.off("peer:away", onAway);
    live.off("peer:rejoined", onRejoined);
    live.off("peer:replaced", onRejoined);
    live.off("consultation:state", onConsultationState);
    if (typeof unState === "function") unState();
    reportQuality(true);
    stopQuality();
    clearInterval(reportTimer);
    clearTimeout(renewTimer);
    clearTimeout(notConnectedTimer);
    connection?.close();
    remoteVideo.srcObject = null;
    localVideo.srcObject = null;
    root.replaceChildren();
  }
  return { destroy, connection };
}
