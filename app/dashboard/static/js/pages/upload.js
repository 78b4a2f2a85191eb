// Upload: a resumable tus upload of an archive (tus-js-client, vendored) with a progress
// bar. tus-js-client keeps the upload's URL in localStorage under the file's fingerprint
// (name, size, type, modification time), so choosing the same file after a reload
// continues from the last byte the server acknowledged. Then: shard it.

import { api, authHeaders, describe } from "../api.js";
import { clear, errorBox, fmtBytes, h, progressBar, table } from "../dom.js";
import { shardForm } from "../shard-form.js";

const TUS_SRC = "dashboard/static/vendor/tus-js-client/tus.min.js";
// Bytes per PATCH; localStorage "tinyres.uploadChunkBytes" overrides it (tests, slow links).
const chunkBytes = () => Number(localStorage.getItem("tinyres.uploadChunkBytes")) || 4 * 1024 * 1024;
let tusLoading = null;

function loadTus() {
  tusLoading = tusLoading || new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = TUS_SRC;
    script.onload = () => resolve(window.tus);
    script.onerror = () => reject(new Error("tus-js-client did not load"));
    document.head.append(script);
  });
  return tusLoading;
}

function nameOf(file) {
  const stem = file.name.replace(/\.(zip|tar\.gz|tgz|tar)$/i, "").replace(/[^A-Za-z0-9_-]/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return stem.slice(0, 64) || "upload";
}

function tusError(error) {
  const body = error.originalResponse?.getBody?.();
  try { return JSON.parse(body).detail ?? error.message; } catch { return body || error.message; }
}

async function sourcesTable(slot, shard) {
  try {
    const { sources } = await api("sources");
    const rows = sources.map((s) => [s.path, s.kind, fmtBytes(s.bytes), s.origin,
      h("button", { type: "button", class: "secondary", "aria-label": `Shard ${s.path}`, onclick: () => { shard.use(s.path); shard.el.querySelector("#shard-dataset").focus(); } }, "Shard")]);
    clear(slot).append(rows.length ? table("Sources a shard job accepts", ["Source", "Kind", "Size", "Origin", "Action"], rows) : h("p", { class: "muted" }, "no sources yet"));
    return sources;
  } catch (error) {
    clear(slot).append(errorBox(describe(error)));
    return [];
  }
}

export async function render(main) {
  const file = h("input", { id: "upload-file", type: "file", accept: ".zip,.tar,.tar.gz,.tgz,application/zip,application/x-tar,application/gzip" });
  const name = h("input", { id: "upload-name", "aria-describedby": "upload-name-hint" });
  const start = h("button", { type: "submit", id: "upload-start" }, "Upload");
  const pause = h("button", { type: "button", id: "upload-pause", class: "secondary", disabled: true }, "Pause");
  const bar = progressBar("Upload progress", { big: true });
  const status = h("p", { id: "upload-status", "aria-live": "polite" });
  const resumed = h("p", { id: "upload-resumed", class: "muted", "aria-live": "polite" });
  const sources = h("div", { id: "sources" });
  const shard = shardForm();
  let upload = null;

  file.addEventListener("change", () => { if (file.files[0]) name.value = nameOf(file.files[0]); });
  pause.addEventListener("click", () => { upload?.abort(); pause.disabled = true; start.disabled = false; status.textContent = "Paused: choose the same file and Upload to continue, even after a reload."; });
  const form = h("form", { id: "upload-form", "aria-label": "Upload an archive" },
    h("div", { class: "grid" },
      h("div", {}, h("label", { for: "upload-file" }, "Archive (.zip, .tar, .tar.gz)"), file),
      h("div", {}, h("label", { for: "upload-name" }, "Source name"), name,
        h("p", { class: "hint", id: "upload-name-hint" }, "becomes the source uploads/NAME.zip (or .tar, .tar.gz)"))),
    h("div", { class: "row" }, start, pause),
    bar.el, status, resumed);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    if (!chosen) { status.textContent = "Choose an archive first."; file.focus(); return; }
    const tus = await loadTus();
    start.disabled = true;
    pause.disabled = false;
    upload = new tus.Upload(chosen, {
      endpoint: new URL("uploads", location.href).href,
      chunkSize: chunkBytes(),
      retryDelays: [0, 1000, 3000],
      headers: authHeaders(),
      metadata: { name: name.value.trim(), filename: chosen.name },
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => { bar.set(sent / total, `${fmtBytes(sent)} of ${fmtBytes(total)}`); status.textContent = `Uploading: ${fmtBytes(sent)} of ${fmtBytes(total)}`; },
      onError: (error) => { start.disabled = false; pause.disabled = true; status.textContent = `Upload failed: ${tusError(error)}`; },
      onSuccess: () => {
        pause.disabled = true;
        start.disabled = false;
        bar.set(1);
        const stem = name.value.trim();
        sourcesTable(sources, shard).then((listed) => {
          const found = listed.find((s) => s.origin === "upload" && s.path.startsWith(`uploads/${stem}.`));
          const path = found ? found.path : `uploads/${stem}.zip`;
          status.textContent = `Uploaded: the source ${path}. Shard it below.`;
          shard.use(path);
        });
      },
    });
    const previous = await upload.findPreviousUploads();
    resumed.textContent = "";
    if (previous.length) {
      upload.resumeFromPreviousUpload(previous[0]);
      resumed.textContent = "Resuming an earlier upload of this file (from the last byte the server has).";
    }
    upload.start();
  });

  clear(main).append(h("h1", {}, "Upload a dataset"), h("section", { "aria-label": "Upload" }, form),
    h("section", { "aria-label": "Shard" }, shard.el), h("section", { "aria-label": "Sources" }, h("h2", {}, "Sources"), sources));
  await sourcesTable(sources, shard);
  return () => upload?.abort();
}
