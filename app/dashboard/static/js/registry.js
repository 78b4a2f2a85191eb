// A model's aliases (PUT /aliases/{alias}) and exports (POST/GET /models/{id}/exports).
// Where the server does not offer them yet (404), the section says so.

import { ApiError, api, describe } from "./api.js";
import { clear, errorBox, fmtBytes, fmtNumber, fmtTime, h, table } from "./dom.js";
import { openStream } from "./sse.js";

const FORMATS = ["onnx", "saved_model", "litert"];
const EXTENSIONS = { onnx: "onnx", saved_model: "zip", litert: "tflite" };
const missing = (error) => error instanceof ApiError && error.status === 404;

export function aliasSection(id) {
  const list = h("p", { id: "aliases" }, "Loading…");
  const alias = h("input", { id: "alias-name", value: "prod", "aria-describedby": "alias-error" });
  const error = h("p", { class: "field-error", id: "alias-error", role: "alert" });
  const form = h("form", { id: "alias-form", "aria-label": "Set an alias" },
    h("div", { class: "row" }, h("div", {}, h("label", { for: "alias-name" }, "Alias"), alias), h("button", { type: "submit" }, "Point the alias at this model")), error);
  async function refresh() {
    try {
      const { aliases } = await api("aliases");
      const mine = aliases.filter((a) => a.model === id).map((a) => a.alias);
      list.textContent = mine.length ? `Aliases: ${mine.join(", ")}` : "No alias points at this model.";
    } catch (err) {
      list.textContent = missing(err) ? "Aliases are not available on this server yet." : describe(err);
    }
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await api(`aliases/${encodeURIComponent(alias.value.trim())}`, { method: "PUT", json: { model: id } });
      refresh();
    } catch (err) {
      error.textContent = describe(err);
    }
  });
  refresh();
  return h("section", { "aria-label": "Aliases" }, h("h2", {}, "Aliases"), list, form);
}

async function download(id, format, button) {
  button.disabled = true;
  try {
    const response = await api(`models/${encodeURIComponent(id)}/exports/${format}`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: `${id}.${EXTENSIONS[format] || format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } finally {
    button.disabled = false;
  }
}

export function exportSection(id) {
  const list = h("div", { id: "exports" }, h("p", { class: "muted" }, "Loading…"));
  const format = h("select", { id: "export-format" }, FORMATS.map((f) => h("option", { value: f }, f)));
  const outcome = h("p", { id: "export-outcome", "aria-live": "polite" });
  const form = h("form", { id: "export-form", "aria-label": "Export the model" },
    h("div", { class: "row" }, h("div", {}, h("label", { for: "export-format" }, "Format"), format), h("button", { type: "submit" }, "Start the export")), outcome);
  let stream = null;
  async function refresh() {
    try {
      const { exports } = await api(`models/${encodeURIComponent(id)}/exports`);
      const rows = exports.map((e) => [e.format, fmtBytes(e.bytes), fmtNumber(e.agreement, 3), fmtTime(e.created_at),
        h("button", { type: "button", class: "secondary", "aria-label": `Download the ${e.format} export`, onclick: (ev) => download(id, e.format, ev.currentTarget).catch((err) => outcome.textContent = describe(err)) }, "Download")]);
      clear(list).append(rows.length ? table(null, ["Format", "Size", "Agreement", "Created", "Artifact"], rows) : h("p", { class: "muted" }, "No export yet."));
    } catch (err) {
      clear(list).append(missing(err) ? h("p", {}, "Exports are not available on this server yet.") : errorBox(describe(err)));
    }
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const job = await api(`models/${encodeURIComponent(id)}/exports`, { method: "POST", json: { format: format.value } });
      outcome.replaceChildren("Export started: ", h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id));
      stream?.close();
      stream = openStream(`jobs/${encodeURIComponent(job.id)}/events`, ["end"], (_, done) => {
        outcome.append(` — ${done.state}${done.error ? `: ${done.error}` : ""}`);
        refresh();
      });
    } catch (err) {
      outcome.textContent = missing(err) ? "Exports are not available on this server yet." : describe(err);
    }
  });
  refresh();
  return { el: h("section", { "aria-label": "Exports" }, h("h2", {}, "Exports"), list, form), close: () => stream?.close() };
}
