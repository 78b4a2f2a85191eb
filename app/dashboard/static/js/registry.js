// A model's aliases (PUT /aliases/{alias}) and exports (POST/GET /models/{id}/exports): an
// export job is followed with a progress bar to the list (format, size, agreement, date)
// and its download button, or to its `error`. Where the server does not offer them yet
// (404), the section says so.

import { ApiError, api, describe } from "./api.js";
import { clear, errorBox, fmtBytes, fmtRate, fmtTime, h, mount } from "./dom.js";
import { followJob } from "./job-follow.js";

const FORMATS = ["saved_model", "onnx", "litert"];
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
    const named = /filename="?([^";]+)"?/.exec(response.headers.get("content-disposition") || "");
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: named ? named[1] : `${id}.${EXTENSIONS[format] || format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } finally {
    button.disabled = false;
  }
}

const exportProgress = {
  label: "Export progress",
  fraction: (p) => p.fraction,
  text: (p, state) => {
    if (state === "queued" && !p.stage) return "waiting for a worker";
    return [p.stage || state, typeof p.images === "number" ? `${p.images} val images checked` : null].filter(Boolean).join(": ");
  },
};

function exportRow(id, e, onError) {
  const button = h("button", { type: "button", class: "secondary", "aria-label": `Download the ${e.format} export` }, "Download");
  button.addEventListener("click", () => download(id, e.format, button).catch((err) => onError(describe(err))));
  const cells = [
    h("th", { scope: "row" }, e.format),
    h("td", { class: "num", "data-value": String(e.bytes) }, fmtBytes(e.bytes)),
    h("td", { class: "num", "data-col": "agreement", "data-value": String(e.agreement) },
      fmtRate(e.agreement), typeof e.images === "number" ? h("span", { class: "muted" }, ` on ${e.images}`) : null),
    h("td", {}, e.runtime || "–"),
    h("td", {}, fmtTime(e.created_at)),
    h("td", {}, button),
  ];
  return h("tr", { "data-format": e.format }, cells);
}

export function exportSection(id) {
  const list = h("div", { id: "exports" }, h("p", { class: "muted" }, "Loading…"));
  const format = h("select", { id: "export-format" }, FORMATS.map((f) => h("option", { value: f }, f)));
  const start = h("button", { type: "submit", id: "export-start" }, "Start the export");
  const progress = h("div", { id: "export-progress" });
  const outcome = h("p", { id: "export-outcome", role: "status" });
  const form = h("form", { id: "export-form", "aria-label": "Export the model" },
    h("div", { class: "row" }, h("div", {}, h("label", { for: "export-format" }, "Format"), format), start), progress, outcome);
  let followed = null;
  const say = (text) => { outcome.textContent = text; };
  async function refresh() {
    try {
      const { exports } = await api(`models/${encodeURIComponent(id)}/exports`);
      clear(list).append(exports.length
        ? h("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": "Exports of this model" }, h("table", { id: "exports-table" },
          h("caption", { class: "muted" }, "Checked exports: agreement with the served model on the val split, in the artifact's own runtime"),
          h("thead", {}, h("tr", {}, ["Format", "Size", "Agreement", "Runtime", "Created", "Artifact"].map((t, i) => h("th", { scope: "col", class: i === 1 || i === 2 ? "num" : "" }, t)))),
          h("tbody", {}, exports.map((e) => exportRow(id, e, say)))))
        : h("p", { class: "muted" }, "No export yet."));
    } catch (err) {
      clear(list).append(missing(err) ? h("p", {}, "Exports are not available on this server yet.") : errorBox(describe(err)));
    }
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = format.value;
    start.disabled = true;
    say("");
    clear(progress);
    try {
      const job = await api(`models/${encodeURIComponent(id)}/exports`, { method: "POST", json: { format: chosen } });
      followed?.close();
      followed = followJob(job, exportProgress, (done) => {
        followed = null;
        start.disabled = false;
        if (done.state === "succeeded") {
          clear(progress);
          say(`The ${chosen} export is ready.`);
        } else {
          mount(progress, errorBox(`The ${chosen} export ${done.state}${done.error ? `: ${done.error}` : ""}`));
        }
        refresh();
      });
      progress.append(followed.el);
    } catch (err) {
      start.disabled = false;
      mount(progress, errorBox(missing(err) ? "Exports are not available on this server yet." : describe(err)));
    }
  });
  refresh();
  return { el: h("section", { "aria-label": "Exports" }, h("h2", {}, "Exports"), list, form), close: () => followed?.close() };
}
