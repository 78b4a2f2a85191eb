// Server-Sent Events of the API. Without an API key: the browser's EventSource. With one:
// EventSource cannot send headers, so the stream is read with fetch() and parsed here
// (same events, same reconnect with Last-Event-ID).

import { apiKey, authHeaders, reportUnauthorized } from "./api.js";

const RETRY_MS = 2000;

/**
 * Follow `url`; onEvent(name, data) for each event named in `names`. An `end` event closes
 * the stream for good. Returns {close()}.
 */
export function openStream(url, names, onEvent) {
  return apiKey() ? fetchStream(url, names, onEvent) : eventSource(url, names, onEvent);
}

function eventSource(url, names, onEvent) {
  const source = new EventSource(url);
  for (const name of names) {
    source.addEventListener(name, (message) => {
      onEvent(name, JSON.parse(message.data));
      if (name === "end") source.close();
    });
  }
  return { close: () => source.close() };
}

function fetchStream(url, names, onEvent) {
  const controller = new AbortController();
  let lastId = null;
  let ended = false;
  const dispatch = (event) => {
    if (event.id !== null) lastId = event.id;
    if (!names.includes(event.name) || event.data === "") return;
    onEvent(event.name, JSON.parse(event.data));
    if (event.name === "end") ended = true;
  };
  (async () => {
    while (!ended && !controller.signal.aborted) {
      try {
        const headers = authHeaders(lastId ? { "Last-Event-ID": lastId } : {});
        const response = await fetch(url, { headers, signal: controller.signal });
        if (response.status === 401) { reportUnauthorized(); return; }
        if (!response.ok) return;
        await readEvents(response.body, dispatch);
      } catch (error) {
        if (controller.signal.aborted) return;
      }
      if (!ended) await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  })();
  return { close: () => controller.abort() };
}

/** Parse a text/event-stream body (the WHATWG rules that matter here). */
async function readEvents(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { name: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        dispatch({ name: event.name, data: event.data.join("\n"), id: event.id });
        event = { name: "message", data: [], id: null };
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.name = text;
        else if (field === "data") event.data.push(text);
        else if (field === "id") event.id = text;
      }
    }
  }
}

/** Append the text of a streamed plain-text response (a followed log) as it arrives. */
export async function followText(url, onText, signal) {
  const response = await fetch(url, { headers: authHeaders(), signal });
  if (response.status === 401) reportUnauthorized();
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}
