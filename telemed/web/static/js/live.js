// The live connection both pages use: Socket.IO with the bearer token, acks as Promises,
// one state line ('connecting' | 'connected' | 'reconnecting' | 'refused' | 'closed').

import { io } from "/vendor/socket.io.esm.min.js";
import { ApiError } from "./api.js";

const ACK_TIMEOUT_MS = 10000;

/** Opens the Socket.IO connection for a token; chat missed while away is replayed by the server. */
export function connectLive(token) {
  let state = "connecting";
  let refusal = null;
  let lastMessageId = null;
  const stateHooks = new Set();

  const socket = io({
    // A function, so every reconnect tells the server the last chat message we have.
    auth: (cb) => cb(lastMessageId ? { token, last_message_id: lastMessageId } : { token }),
    transports: ["websocket"],
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
  });

  function setState(next, detail = null) {
    if (next === state && detail === refusal) return;
    state = next;
    refusal = detail;
    for (const fn of stateHooks) {
      try {
        fn(next, detail);
      } catch (error) {
        console.error(error);
      }
    }
  }

  function seen(message) {
    // Message ids are integers sent as strings; the server wants the largest as a number.
    const id = Number(message?.message_id);
    if (Number.isSafeInteger(id) && (lastMessageId === null || id > lastMessageId)) lastMessageId = id;
  }

  const live = {
    session: null,
    get state() {
      return state;
    },
    get refusal() {
      return refusal;
    },
    get iceServers() {
      return live.session?.ice_servers || [];
    },
    /** Sends an event and resolves with its ack; rejects with ApiError on {ok:false} or after 10 s. */
    async request(event, payload = {}) {
      if (state === "refused" || state === "closed") {
        throw new ApiError(refusal?.code || "not_connected", refusal?.message || `not connected (${state})`, 0);
      }
      let ack;
      try {
        ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
      } catch {
        throw new ApiError("timeout", `no answer to ${event}`, 0);
      }
      if (!ack || ack.ok === false) {
        const error = ack?.error || {};
        throw new ApiError(error.code || "bad_ack", error.message || event, 0, error.details);
      }
      return ack;
    },
    on(event, fn) {
      socket.on(event, fn);
      return live;
    },
    off(event, fn) {
      socket.off(event, fn);
      return live;
    },
    /** Calls fn(state, refusal) now and on every change; returns a function that unhooks it. */
    onState(fn) {
      stateHooks.add(fn);
      fn(state, refusal);
      return () => stateHooks.delete(fn);
    },
    close() {
      socket.disconnect();
      setState("closed");
    },
    socket,
  };

  socket.on("session", (data) => {
    live.session = data;
  });
  socket.on("chat:message", seen);
  socket.on("chat:history", (data) => (data?.messages || []).forEach(seen));
  socket.on("connect", () => setState("connected"));
  socket.on("disconnect", (reason) => {
    if (state === "refused" || state === "closed") return;
    // "io server disconnect" is the server closing us on purpose: socket.io will not retry.
    if (reason === "io server disconnect") setState("refused", refusal || { code: "disconnected", message: reason });
    else setState("reconnecting");
  });
  socket.on("connect_error", (err) => {
    if (err?.data?.code || !socket.active) {
      // The server refused the handshake (bad token, no consent): no retry.
      setState("refused", { code: err?.data?.code || "refused", message: err?.data?.message || err?.message || "" });
    } else {
      setState(state === "connected" || state === "reconnecting" ? "reconnecting" : "connecting");
    }
  });
  // Logout, expiry, consent withdrawal or a disabled account: the server disconnects next.
  // The pages already know the two refusals it amounts to: log in again, or the consent.
  socket.on("session:ended", (data) => {
    const code = data?.reason === "consent_withdrawn" ? "consent_required" : "unauthorized";
    setState("refused", { code, reason: data?.reason || "", message: "" });
  });
  socket.on("session:replaced", (data) => {
    setState("refused", { code: data?.reason || "taken_over", message: data?.message || "" });
  });
  return live;
}
