// The one way the dashboard talks to the server: the public HTTP API, relative to the page
// (the dashboard is served at "/"), with the API key of this browser session when one is set.

const KEY = "tinyres.apiKey";
const unauthorizedListeners = new Set();

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

/** Headers for a request by hand (EventSource fallbacks, tus uploads). */
export function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, "X-API-Key": key } : { ...extra };
}

export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

export function reportUnauthorized() {
  for (const listener of unauthorizedListeners) listener();
}

async function errorDetail(response) {
  try {
    const body = await response.json();
    return body.detail ?? response.statusText;
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}

/**
 * fetch() with the key and JSON handling. Resolves to the parsed JSON body (or the
 * Response itself with `raw: true`); rejects with an ApiError carrying the API's `detail`.
 */
export async function api(path, { method = "GET", json, body, headers = {}, raw = false, signal } = {}) {
  const sent = authHeaders(headers);
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers: sent, body, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "the server cannot be reached");
  }
  if (!response.ok) {
    const detail = await errorDetail(response);
    if (response.status === 401) reportUnauthorized();
    throw new ApiError(response.status, detail);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** An object URL of an image the API serves (fetched with the key, unlike <img src>). */
export async function imageUrl(path) {
  const response = await api(path, { raw: true });
  return URL.createObjectURL(await response.blob());
}

/** A readable sentence for an error, whatever its shape. */
export function describe(error) {
  if (!(error instanceof ApiError)) return String(error?.message ?? error);
  if (error.status === 401) return "wrong key: the server refused the API key (set it with the “API key” button)";
  if (Array.isArray(error.detail)) return error.detail.map((item) => item.msg).join("; ");
  return typeof error.detail === "string" ? error.detail : `HTTP ${error.status}`;
}
