// The call's path and quality, from the peer connection's getStats(), once a second:
// the path (`direct`, or `relay` when either end of the selected candidate pair is a TURN
// relay), the round trip of that pair, the share of packets lost on the way in, the
// bitrate received and the video freezes. Both pages show it on the call screen
// (call.js); the samples of a leg make its summary (median round trip, loss, bitrate,
// freezes), which the page sends to the server (POST /consultations/{id}/quality).

export const QUALITY_STRINGS = {
  ru: {
    "quality.direct": "Напрямую",
    "quality.relay": "Через ретранслятор (TURN)",
    "quality.rtt": "задержка {ms} мс",
    "quality.loss": "потери {pct} %",
    "quality.bitrate": "{kbps} кбит/с",
    "quality.freezes": "замирания: {n}",
    "quality.good": "хорошее качество",
    "quality.fair": "среднее качество",
    "quality.poor": "плохое качество",
    "quality.label": "Качество связи",
  },
  en: {
    "quality.direct": "Direct",
    "quality.relay": "Through the relay (TURN)",
    "quality.rtt": "round trip {ms} ms",
    "quality.loss": "loss {pct} %",
    "quality.bitrate": "{kbps} kbit/s",
    "quality.freezes": "freezes: {n}",
    "quality.good": "good quality",
    "quality.fair": "fair quality",
    "quality.poor": "poor quality",
    "quality.label": "Call quality",
  },
};

/** The selected candidate pair of a stats report and what it says: {path, local, remote,
 * relayProtocol, rttMs}; null before ICE has chosen one. */
export function selectedPath(report) {
  let pair = null;
  for (const s of report.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || pair;
  }
  if (!pair) {
    for (const s of report.values()) {
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
        if (!pair || (s.bytesReceived || 0) > (pair.bytesReceived || 0)) pair = s;
      }
    }
  }
  if (!pair) return null;
  const local = report.get(pair.localCandidateId);
  const remote = report.get(pair.remoteCandidateId);
  const relayed = local?.candidateType === "relay" || remote?.candidateType === "relay";
  return {
    path: relayed ? "relay" : "direct",
    local: local?.candidateType || null,
    remote: remote?.candidateType || null,
    relayProtocol: local?.relayProtocol || null,
    rttMs: typeof pair.currentRoundTripTime === "number" ? pair.currentRoundTripTime * 1000 : null,
  };
}

/** Counters of what came in (and went out) so far, summed over the streams. */
function counters(report) {
  const c = { received: 0, lost: 0, bytesIn: 0, bytesOut: 0, freezes: 0 };
  for (const s of report.values()) {
    if (s.type === "inbound-rtp") {
      c.received += s.packetsReceived || 0;
      c.lost += Math.max(0, s.packetsLost || 0);
      c.bytesIn += s.bytesReceived || 0;
      if (s.kind === "video") c.freezes += s.freezeCount || 0;
    } else if (s.type === "outbound-rtp") {
      c.bytesOut += s.bytesSent || 0;
    }
  }
  return c;
}

/** good | fair | poor, from the round trip and the loss. */
export function level(sample) {
  const rtt = sample.rttMs ?? 0;
  const loss = sample.lossPercent ?? 0;
  if (rtt > 400 || loss > 5) return "poor";
  if (rtt > 200 || loss > 2) return "fair";
  return "good";
}

/** Sample `getPc()`'s stats every `intervalMs` and hand each sample to onSample; returns
 * a stop function. A sample: {path, local, remote, relayProtocol, rttMs, lossPercent,
 * bitrateKbps, sendKbps, freezes, at}. */
export function watchQuality(getPc, onSample, intervalMs = 1000) {
  let previous = null;
  let previousPc = null;
  let stopped = false;
  async function tick() {
    const pc = getPc();
    if (!pc || pc.connectionState === "closed") return;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return;
    }
    if (stopped) return;
    const path = selectedPath(report);
    const now = counters(report);
    const at = performance.now();
    if (pc !== previousPc) previous = null; // a new connection starts its counters at zero
    previousPc = pc;
    const sample = { ...(path || { path: null, rttMs: null }), at, freezes: now.freezes };
    if (previous) {
      const seconds = (at - previous.at) / 1000;
      const got = now.received - previous.received;
      const lost = now.lost - previous.lost;
      sample.received = Math.max(0, got);
      sample.lost = Math.max(0, lost);
      sample.lossPercent = got + lost > 0 ? (100 * Math.max(0, lost)) / (got + lost) : 0;
      sample.bitrateKbps = seconds > 0 ? ((now.bytesIn - previous.bytesIn) * 8) / 1000 / seconds : 0;
      sample.sendKbps = seconds > 0 ? ((now.bytesOut - previous.bytesOut) * 8) / 1000 / seconds : 0;
    }
    previous = { ...now, at };
    if (path && sample.lossPercent !== undefined) onSample(sample);
  }
  const timer = setInterval(tick, intervalMs);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

function lossOver(samples) {
  let lost = 0;
  let expected = 0;
  for (const x of samples) {
    lost += x.lost || 0;
    expected += (x.lost || 0) + (x.received || 0);
  }
  return expected > 0 ? (100 * lost) / expected : 0;
}

function median(values) {
  const sorted = values.filter((v) => typeof v === "number" && Number.isFinite(v)).sort((a, b) => a - b);
  if (!sorted.length) return null;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The samples of one leg and their summary: the path most seen (relay wins a tie), the
 * median round trip, the loss over the whole leg (packets lost of those expected), the
 * mean bitrate, the freezes. */
export class QualityLog {
  constructor() {
    this.samples = [];
  }

  add(sample) {
    this.samples.push(sample);
    if (this.samples.length > 3600) this.samples.shift(); // an hour of seconds is plenty
  }

  summary() {
    const s = this.samples;
    if (!s.length) return null;
    const relayed = s.filter((x) => x.path === "relay").length;
    const mean = (key) => s.reduce((sum, x) => sum + (x[key] || 0), 0) / s.length;
    const r = (v, digits = 1) => (v === null ? null : Math.round(v * 10 ** digits) / 10 ** digits);
    return {
      path: relayed * 2 >= s.length ? "relay" : "direct",
      median_rtt_ms: r(median(s.map((x) => x.rttMs))),
      loss_percent: r(lossOver(s), 2),
      bitrate_kbps: r(mean("bitrateKbps")),
      freezes: Math.max(...s.map((x) => x.freezes || 0)),
      seconds: s.length,
    };
  }
}

/** The indicator's text: "Through the relay (TURN) · round trip 12 ms · loss 0 % · ...". */
export function describe(sample, tr) {
  const parts = [tr(`quality.${sample.path}`)];
  if (sample.rttMs !== null && sample.rttMs !== undefined) parts.push(tr("quality.rtt", { ms: Math.round(sample.rttMs) }));
  parts.push(tr("quality.loss", { pct: (sample.lossPercent || 0).toFixed(1) }));
  parts.push(tr("quality.bitrate", { kbps: Math.round(sample.bitrateKbps || 0) }));
  parts.push(tr("quality.freezes", { n: sample.freezes || 0 }));
  parts.push(tr(`quality.${level(sample)}`));
  return parts.join(" · ");
}
