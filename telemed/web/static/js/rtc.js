// One WebRTC call between the patient and their current staff counterpart.
//
// The perfect negotiation pattern (W3C WebRTC 1.0, section 10.7): either side may offer;
// on a collision the polite peer (the patient) rolls back and answers, the impolite one
// (staff) ignores the other's offer. Signals go through the server's `signal` relay:
// descriptions as {type, sdp} (docs/realtime.md), candidates as {candidate}.
//
// Recovery: a connection that fails (or stays disconnected, or whose network changes)
// gets an ICE restart; after `maxRestarts` failed restarts the impolite side builds a
// fresh RTCPeerConnection and offers with `fresh: true`, and the other side answers on a
// fresh one too. An offer nobody answered is sent again (a lost relay or a page that
// mounted late), so the two sides never wait on each other for ever.
//
// States: 'connecting' | 'connected' | 'reconnecting' | 'failed' | 'closed', each change
// through one setState() that logs `old -> new` and dispatches a 'state' event.

const RESEND_MS = 4000; // an offer without an answer after this is sent again
const DISCONNECTED_MS = 2500; // 'disconnected' this long is treated as a failure
const MAX_PENDING = 64; // candidates kept for a description still on its way

export class CallConnection extends EventTarget {
  constructor({
    live,
    consultationId,
    polite,
    iceServers = [],
    media = { audio: true, video: true },
    maxRestarts = 2,
    maxFresh = 3,
    onState = null,
    onRemoteStream = null,
  }) {
    super();
    this.live = live;
    this.consultationId = consultationId;
    this.polite = Boolean(polite);
    this.iceServers = iceServers || [];
    this.media = media;
    this.maxRestarts = maxRestarts;
    this.maxFresh = maxFresh;
    this.state = "connecting";
    this.localStream = null;
    this.remoteStream = null;
    this.pc = null;
    this.restarts = 0; // ICE restarts since the last 'connected'
    this.freshCount = 0; // fresh connections since the last 'connected'
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.answerPending = false; // SRD(answer) in flight (perfect negotiation's guard)
    this.closed = false;
    this.timers = new Set();
    // The server relays each signal in its own task, so a candidate may overtake the
    // description it belongs to: kept here until a remote description with its ufrag is set.
    this.pendingCandidates = [];
    this.early = []; // signals that came before start() built the first connection
    // Every signal carries the epoch of the RTCPeerConnection that sent it (its build
    // time on the sender's clock): a description from an older one than the last applied
    // is stale (e.g. the offer of a connection the other page renewed, then threw away),
    // one from a newer one means the other side built a new connection: so do we.
    this.epoch = 0;
    this.remoteEpoch = null;
    if (onState) this.addEventListener("state", (e) => onState(e.detail));
    if (onRemoteStream) this.addEventListener("remotestream", (e) => onRemoteStream(e.detail));
    this.onNetworkChange = () => this.restartIce("network change");
    this.audioMuted = false;
    this.cameraOff = false;
    // What ICE gathered on the current connection (host, srflx, relay) and the ICE
    // servers that answered with an error: why a call that never connects cannot.
    this.gatheredTypes = new Set();
    this.candidateErrors = [];
  }

  /** Whether the ICE servers handed out include a TURN relay. */
  get hasTurn() {
    return this.iceServers.some((s) => [s.urls].flat().some((u) => /^turns?:/.test(u)));
  }

  /** Fresh ICE servers (new TURN credentials, `ice:renew`): the connection uses them from
   * its next gathering; a call through the relay restarts ICE at once so its relay is
   * allocated again with them before the old credentials expire. */
  updateIceServers(servers, relayed = false) {
    if (!Array.isArray(servers) || this.closed) return;
    this.iceServers = servers;
    try {
      this.pc?.setConfiguration({ ...this.pc.getConfiguration(), iceServers: servers });
    } catch (err) {
      console.info("rtc: ICE servers not updated", err?.name || err);
      return;
    }
    if (relayed && this.state === "connected" && this.pc) {
      console.info("rtc: ICE restart with renewed TURN credentials");
      this.pc.restartIce();
    }
  }

  /** Take the camera/microphone (as the channel asks) and open the first connection. */
  async start() {
    const wants = { audio: Boolean(this.media.audio), video: Boolean(this.media.video) };
    if (wants.audio || wants.video) {
      this.localStream = await navigator.mediaDevices.getUserMedia(
        wants.video ? { audio: wants.audio, video: { width: 1280, height: 720 } } : wants,
      );
      if (this.closed) {
        this.stopLocal();
        return;
      }
    }
    window.addEventListener("online", this.onNetworkChange);
    navigator.connection?.addEventListener?.("change", this.onNetworkChange);
    this.build();
    const early = this.early;
    this.early = [];
    for (const data of early) await this.handleSignal(data);
  }

  /** Apply one relayed signal: {type, sdp} (or {description}) or {candidate}. */
  async handleSignal(data) {
    if (this.closed || !data) return;
    if (!this.pc) {
      this.early.push(data); // the camera is still being opened: applied once it is
      return;
    }
    const description = data.description || (data.type && data.sdp ? data : null);
    try {
      if (description) {
        await this.applyDescription(
          { type: description.type, sdp: description.sdp },
          Boolean(data.fresh),
          typeof data.epoch === "number" ? data.epoch : null,
          typeof data.answers === "number" ? data.answers : null,
        );
      } else if (data.candidate) {
        await this.addCandidate(data.candidate);
      }
    } catch (err) {
      console.warn("rtc: signal not applied", err);
    }
  }

  async applyDescription(description, fresh, epoch = null, answers = null) {
    // An answer to another connection's offer (e.g. the one this page threw away) would
    // leave this one stable with nobody behind it: never applied.
    if (description.type === "answer" && answers !== null && answers !== this.epoch) {
      console.info("rtc: answer to another connection's offer ignored");
      return;
    }
    const known = this.remoteEpoch;
    if (epoch !== null && known !== null && epoch < known) {
      console.info(`rtc: ${description.type} of a replaced connection ignored`);
      return;
    }
    // A fresh offer, or one from a newer connection, means the other side threw its
    // connection away: so do we (once: the same offer sent again, same SDP session and
    // epoch, lands on the connection it built).
    const remote = this.pc?.remoteDescription;
    const newer = epoch !== null && known !== null && epoch > known;
    const replaced = newer || (fresh && remote && !sameSession(remote, description));
    if (description.type === "offer" && remote && replaced) {
      console.info("rtc: the other side has a new connection: a new one here too");
      this.build();
    }
    const pc = this.pc;
    if (!pc) return;
    // An answer to an offer already answered (ours was sent again): nothing to apply.
    if (description.type === "answer" && pc.signalingState === "stable") return;
    const readyForOffer =
      !this.makingOffer && (pc.signalingState === "stable" || this.answerPending);
    const collision = description.type === "offer" && !readyForOffer;
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    this.answerPending = description.type === "answer";
    try {
      await pc.setRemoteDescription(description); // rolls our offer back when polite
    } catch (err) {
      this.answerPending = false;
      if (description.type !== "offer") throw err;
      // An offer this connection cannot take (e.g. new DTLS keys): take it on a fresh one.
      this.build();
      await this.pc.setRemoteDescription(description);
    }
    this.answerPending = false;
    if (epoch !== null) this.remoteEpoch = epoch;
    this.flushCandidates(this.pc);
    if (description.type === "offer") {
      await this.pc.setLocalDescription();
      const answer = { type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp };
      if (epoch !== null) answer.answers = epoch; // which offer this answers
      this.send(answer);
    }
  }

  async addCandidate(candidate) {
    const pc = this.pc;
    if (!pc?.remoteDescription || !forRemote(pc, candidate)) {
      // Its description has not come yet (or was ignored in a collision): keep it.
      this.pendingCandidates.push(candidate);
      this.pendingCandidates.splice(0, this.pendingCandidates.length - MAX_PENDING);
      return;
    }
    try {
      await pc.addIceCandidate(candidate);
    } catch (err) {
      if (!this.ignoreOffer) console.warn("rtc: candidate not added", err);
    }
  }

  /** Add the kept candidates that belong to the remote description just set. */
  flushCandidates(pc) {
    if (!pc?.remoteDescription) return;
    const later = [];
    for (const candidate of this.pendingCandidates) {
      if (!forRemote(pc, candidate)) later.push(candidate);
      else pc.addIceCandidate(candidate).catch((err) => console.warn("rtc: candidate not added", err));
    }
    this.pendingCandidates = later;
  }

  /** Mute or unmute the microphone (the track stays, so nothing is renegotiated). */
  setMuted(muted) {
    this.audioMuted = Boolean(muted);
    for (const track of this.localStream?.getAudioTracks() || []) track.enabled = !muted;
  }

  /** Turn the camera off or on (black frames while off; no renegotiation). */
  setCameraOff(off) {
    this.cameraOff = Boolean(off);
    for (const track of this.localStream?.getVideoTracks() || []) track.enabled = !off;
  }

  /** Restart ICE (a network change, a failure); a fresh connection after too many. */
  restartIce(why) {
    if (this.closed || !this.pc) return;
    if (this.restarts >= this.maxRestarts) {
      this.freshStart(why);
      return;
    }
    this.restarts += 1;
    console.info(`rtc: ICE restart ${this.restarts}/${this.maxRestarts} (${why})`);
    this.setState("reconnecting");
    this.pc.restartIce(); // fires negotiationneeded: an offer with new ICE credentials
  }

  /** Throw the connection away and negotiate a fresh one (the impolite side offers). */
  freshStart(why) {
    if (this.closed) return;
    if (this.freshCount >= this.maxFresh) {
      this.setState("failed");
      return;
    }
    this.freshCount += 1;
    this.restarts = 0;
    console.info(`rtc: fresh connection ${this.freshCount}/${this.maxFresh} (${why})`);
    this.setState(this.state === "connecting" ? "connecting" : "reconnecting");
    this.build({ fresh: true });
  }

  /** The counterpart changed (a transfer) or came back: start over on a fresh connection. */
  renew() {
    if (this.closed) return;
    this.remoteEpoch = null; // maybe another counterpart, with its own clock
    this.restarts = 0;
    this.freshCount = 0;
    this.setState("connecting");
    this.build({ fresh: true });
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    window.removeEventListener("online", this.onNetworkChange);
    navigator.connection?.removeEventListener?.("change", this.onNetworkChange);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.dropPc();
    this.stopLocal();
    this.setState("closed");
  }

  // --- inside ----------------------------------------------------------------------------

  build({ fresh = false } = {}) {
    this.dropPc();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    this.epoch = Math.max(performance.timeOrigin + performance.now(), this.epoch + 0.001);
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.answerPending = false;
    this.freshOffer = fresh && !this.polite;
    this.remoteStream = null;
    this.dispatchEvent(new CustomEvent("remotestream", { detail: null }));
    pc.ontrack = ({ track }) => {
      if (this.pc !== pc) return;
      // A new stream object each time, so a <video> showing it reloads with every track.
      const tracks = (this.remoteStream?.getTracks() || []).filter((t) => t !== track);
      this.remoteStream = new MediaStream([...tracks, track]);
      this.dispatchEvent(new CustomEvent("remotestream", { detail: this.remoteStream }));
    };
    this.gatheredTypes = new Set();
    this.candidateErrors = [];
    pc.onicecandidate = ({ candidate }) => {
      if (this.pc !== pc || !candidate) return;
      if (candidate.type) this.gatheredTypes.add(candidate.type);
      this.send({ candidate: candidate.toJSON() });
    };
    pc.onicecandidateerror = (e) => {
      if (this.pc === pc && this.candidateErrors.length < 16) {
        this.candidateErrors.push({ url: e.url, code: e.errorCode });
      }
    };
    pc.onnegotiationneeded = () => this.offer(pc);
    pc.onconnectionstatechange = () => this.onConnectionState(pc);
    // An ICE restart on a live connection may not change connectionState at all: the
    // finished negotiation or ICE being connected again says it is back.
    pc.oniceconnectionstatechange = () => this.onConnectionState(pc);
    pc.onsignalingstatechange = () => this.onConnectionState(pc);
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) pc.addTrack(track, this.localStream);
    } else {
      // Chat-only or a side without devices still receives what the other sends.
      if (this.media.audio) pc.addTransceiver("audio", { direction: "recvonly" });
      if (this.media.video) pc.addTransceiver("video", { direction: "recvonly" });
    }
    return pc;
  }

  async offer(pc) {
    if (this.pc !== pc || this.closed) return;
    try {
      this.makingOffer = true;
      await pc.setLocalDescription();
      if (this.pc !== pc) return;
      const data = { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
      if (this.freshOffer) data.fresh = true;
      this.send(data);
      this.resendLater(pc);
    } catch (err) {
      console.warn("rtc: offer failed", err);
    } finally {
      this.makingOffer = false;
    }
  }

  resendLater(pc) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.pc !== pc || this.closed || pc.signalingState !== "have-local-offer") return;
      const d = pc.localDescription; // now with the gathered candidates in it
      const data = { type: d.type, sdp: d.sdp };
      if (this.freshOffer) data.fresh = true;
      this.send(data);
      this.resendLater(pc);
    }, RESEND_MS);
    this.timers.add(timer);
  }

  onConnectionState(pc) {
    if (this.pc !== pc || this.closed) return;
    const s = pc.connectionState;
    // The ICE and signalling events repeat a state: act on each connectionState once.
    const repeated = s === pc.lastSeenState;
    pc.lastSeenState = s;
    if (repeated && s !== "connected") return;
    const iceUp = ["connected", "completed"].includes(pc.iceConnectionState);
    if (s === "connected" && iceUp && pc.signalingState === "stable") {
      this.restarts = 0;
      this.freshCount = 0;
      this.freshOffer = false;
      this.setState("connected");
    } else if (s === "disconnected") {
      this.setState("reconnecting");
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.pc === pc && pc.connectionState === "disconnected") {
          this.restartIce("disconnected");
        }
      }, DISCONNECTED_MS);
      this.timers.add(timer);
    } else if (s === "failed") {
      // Only the impolite side starts over on a fresh connection; both restart ICE.
      if (this.restarts >= this.maxRestarts && this.polite) {
        this.setState("reconnecting");
        return;
      }
      this.restartIce("failed");
    }
  }

  send(data) {
    if (this.closed) return;
    this.live
      .request("signal", { consultation_id: this.consultationId, data: { ...data, epoch: this.epoch } })
      .catch((err) => console.info("rtc: signal not relayed", err?.code || err));
  }

  setState(next) {
    if (next === this.state) return;
    console.info(`rtc: ${this.state} -> ${next}`);
    this.state = next;
    this.dispatchEvent(new CustomEvent("state", { detail: next }));
  }

  dropPc() {
    const pc = this.pc;
    this.pc = null;
    if (!pc) return;
    pc.ontrack = pc.onicecandidate = pc.onnegotiationneeded = pc.onicecandidateerror = null;
    pc.onconnectionstatechange = pc.oniceconnectionstatechange = pc.onsignalingstatechange = null;
    pc.close();
  }

  stopLocal() {
    for (const track of this.localStream?.getTracks() || []) track.stop();
  }
}

/** Whether two descriptions come from the same SDP session (the o= line's id). */
function sameSession(a, b) {
  const id = (sdp) => /^o=\S+ (\S+)/m.exec(sdp || "")?.[1];
  return Boolean(id(a.sdp)) && id(a.sdp) === id(b.sdp);
}

/** Whether a candidate belongs to the connection's remote description (its ICE ufrag). */
function forRemote(pc, candidate) {
  const ufrag = candidate?.usernameFragment;
  return !ufrag || (pc.remoteDescription?.sdp || "").includes(`a=ice-ufrag:${ufrag}\r\n`);
}
