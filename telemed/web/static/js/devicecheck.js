// The connection check (R-DEV) without a page: camera and microphone, bandwidth probes, a
// real WebRTC test call to the server and the server's verdict. Used by /check and by the
// patient app's check screen; each page draws the result itself.

const API = "/api/v1/device-check";

/** The check's REST calls with a bearer token; errors carry the server's code and Retry-After. */
export function checkClient(token) {
  async function call(method, path, body, extra = {}) {
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
  return {
    call,
    token,
    config: () => call("GET", `${API}/config`),
    verdict: (body, lang) => call("POST", `${API}?lang=${lang}`, body),
    last: () => call("GET", API),
    /** Ends a running test call even while the page unloads. */
    forget(callId) {
      fetch(`${API}/call/${callId}`, { method: "DELETE", keepalive: true, headers: { Authorization: `Bearer ${token}` } });
    },
  };
}

// --- camera and microphone -------------------------------------------------------------

/** Opens the devices the channel needs; without a camera it still checks the rest. */
export async function openDevices(channel, config) {
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
  return {
    stream,
    camera: settings?.width ? { width: settings.width, height: settings.height } : null,
    microphone: stream.getAudioTracks().length > 0,
  };
}

/** Calls onLevel(0..1) ten times a second with the microphone's level; returns a stop function. */
export function levelMeter(stream, onLevel) {
  // The live microphone level, so the patient sees the microphone hears them.
  if (!stream?.getAudioTracks().length || !window.AudioContext) return () => {};
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    const rms = Math.sqrt(samples.reduce((sum, s) => sum + s * s, 0) / samples.length);
    onLevel(Math.min(1, rms * 4));
  }, 100);
  return () => {
    clearInterval(timer);
    context.close();
    onLevel(0);
  };
}

// --- bandwidth: a small probe, then one sized for about a second at the speed seen -----

async function probeDown(client, size) {
  const response = await fetch(`${API}/probe?bytes=${size}`, { headers: { Authorization: `Bearer ${client.token}` }, cache: "no-store" });
  if (!response.ok) throw new Error(response.statusText);
  const began = performance.now(); // from the headers on: the body's time on the wire
  const got = (await response.arrayBuffer()).byteLength;
  return (got * 8) / (performance.now() - began); // bits per ms = kbit/s
}

async function probeUp(client, size) {
  const payload = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(payload.subarray(at, Math.min(size, at + 65536)));
  const result = await client.call("POST", `${API}/probe`, undefined, { body: payload, headers: { Authorization: `Bearer ${client.token}`, "Content-Type": "application/octet-stream" } });
  return result.kbps;
}

/** Download and upload speed in kbit/s; the slower decides. */
export async function measureBandwidth(client, config) {
  const cap = config.probe_max_bytes;
  const sized = (kbps) => Math.max(65536, Math.min(cap, Math.round((kbps * 1000) / 8)));
  let down = await probeDown(client, 65536);
  down = await probeDown(client, sized(down));
  let up = await probeUp(client, 65536);
  up = await probeUp(client, sized(up));
  return { down, up, kbps: Math.min(down, up) };
}

// --- the test call ------------------------------------------------------------------------

/** A send-only test call to the server's peer; retries twice when the server is busy. */
export async function testCall(client, stream, config, onBusy = () => {}) {
  const pc = new RTCPeerConnection({ iceServers: config.ice_servers });
  for (const track of stream.getTracks()) {
    if (track.kind === "video") track.contentHint = "detail"; // keep the resolution, drop frames instead
    pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  for (let attempt = 0; ; attempt++) {
    try {
      const answer = await client.call("POST", `${API}/call`, { type: "offer", sdp: pc.localDescription.sdp });
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
      onBusy(seconds);
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

/**
 * The whole check for a channel: devices, speed, test call, verdict. say(key, vars) reports
 * progress ('asking', 'no_devices', 'speed', 'calling', 'busy', 'judging', 'error');
 * onStream(stream | null) lets the page preview the devices. Resolves {verdict, body}.
 */
export async function runCheck(client, { channel, lang, say = () => {}, onStream = () => {}, onCall = () => {} }) {
  let devices = { stream: null, camera: null, microphone: false };
  let call = null;
  try {
    const config = await client.config();
    if (channel !== "chat") {
      say("asking");
      try {
        devices = await openDevices(channel, config);
        onStream(devices.stream);
      } catch (error) {
        say("no_devices", { message: error.message });
      }
    }
    say("speed");
    const speed = await measureBandwidth(client, config);
    const body = {
      channel,
      user_agent: navigator.userAgent,
      camera: devices.camera,
      microphone: devices.microphone,
      bandwidth_kbps: Math.round(speed.kbps),
    };
    if (devices.stream) {
      say("calling");
      try {
        call = await testCall(client, devices.stream, config, (seconds) => say("busy", { seconds }));
        onCall(call.callId);
        body.call_id = call.callId;
      } catch (error) {
        say("error", { message: error.message });
      }
    }
    say("judging");
    const verdict = await client.verdict(body, lang); // with a call_id: answered once measured
    return { verdict, body };
  } finally {
    onCall(null);
    call?.pc.close();
    devices.stream?.getTracks().forEach((track) => track.stop());
    onStream(null);
  }
}
