// The REST client both pages use: JSON in and out under /api/v1, the session kept in
// localStorage, every failure an ApiError carrying the server's snake_case code.

const BASE = "/api/v1";

/** An error answered by the server ({error: {code, message}}) or met on the way (network). */
export class ApiError extends Error {
  constructor(code, message, status = 0, details = undefined) {
    super(message || code);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

/** A client for /api/v1 whose session lives in localStorage under storageKey. */
export function createApi({ storageKey }) {
  let session = load();

  function load() {
    try {
      const raw = localStorage.getItem(storageKey);
      const parsed = raw ? JSON.parse(raw) : null;
      return parsed && typeof parsed.token === "string" ? parsed : null;
    } catch {
      return null;
    }
  }

  async function call(method, path, { json, form } = {}) {
    const headers = { Accept: "application/json" };
    if (session?.token) headers.Authorization = `Bearer ${session.token}`;
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form; // the browser sets the multipart boundary
    }
    let response;
    try {
      response = await fetch(BASE + path, { method, headers, body, cache: "no-store" });
    } catch (error) {
      throw new ApiError("network_error", error?.message || "network error", 0);
    }
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await response.json().catch(() => null) : null;
    if (response.ok) return data ?? {};
    const code = data?.error?.code || `http_${response.status}`;
    const error = new ApiError(code, data?.error?.message || response.statusText, response.status, data?.error?.details);
    if (response.status === 401 && session) {
      // An expired or revoked session (a wrong login code is a 401 too, but has none).
      clearSession();
      window.dispatchEvent(new CustomEvent("telemed:session-expired", { detail: { code } }));
    }
    throw error;
  }

  function setSession(value) {
    // `patients`: everyone insured on the phone (the login's answer), kept across a switch.
    session = value ? { token: value.token, role: value.role, user_id: value.user_id, patients: value.patients || [] } : null;
    if (session) localStorage.setItem(storageKey, JSON.stringify(session));
    else localStorage.removeItem(storageKey);
  }

  function clearSession() {
    setSession(null);
  }

  return {
    get: (path) => call("GET", path),
    post: (path, body = {}) => call("POST", path, { json: body }),
    patch: (path, body = {}) => call("PATCH", path, { json: body }),
    put: (path, body = {}) => call("PUT", path, { json: body }),
    delete: (path, body) => call("DELETE", path, body === undefined ? {} : { json: body }),
    upload: (path, formData) => call("POST", path, { form: formData }),
    get session() {
      return session;
    },
    setSession,
    clearSession,
  };
}
