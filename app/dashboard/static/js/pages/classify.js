// Classify: choose an image (or drop it on the page), pick a model or an alias, and see the
// top-5 classes of POST /predict as bars.

import { api, describe } from "../api.js";
import { clear, h } from "../dom.js";

async function modelOptions(select, wanted) {
  select.append(h("option", { value: "" }, "the newest model"));
  const [models, aliases] = await Promise.all([
    api("models").then((r) => r.models).catch(() => []),
    api("aliases").then((r) => r.aliases).catch(() => []),
  ]);
  if (aliases.length) select.append(h("optgroup", { label: "Aliases" }, aliases.map((a) => h("option", { value: a.alias }, `${a.alias} → ${a.model}`))));
  if (models.length) select.append(h("optgroup", { label: "Models" }, models.map((m) => h("option", { value: m.id }, `${m.id} (${m.dataset})`))));
  if (wanted) select.value = wanted;
}

function bars(predictions) {
  return h("ol", { class: "bars", id: "predictions", "aria-label": "Top classes" }, predictions.map((p) => {
    const pct = (p.probability * 100).toFixed(1);
    return h("li", {},
      h("span", {}, `${p.label} (${p.wnid})`),
      h("span", { class: "bar", "aria-hidden": "true" }, h("span", { style: `width: ${pct}%` })),
      h("span", { class: "num" }, `${pct}%`));
  }));
}

export async function render(main, _params, query) {
  const model = h("select", { id: "classify-model" });
  const file = h("input", { id: "classify-file", type: "file", accept: "image/*" });
  const drop = h("label", { class: "drop", for: "classify-file", id: "drop-zone" }, "Choose an image, or drop one anywhere on this page");
  const preview = h("img", { class: "preview", id: "classify-preview", alt: "The chosen image", hidden: true, width: "128" });
  const result = h("div", { id: "classify-result", "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: "classify-submit" }, "Classify");
  let chosen = null;
  let previewUrl = null;

  function choose(blob) {
    chosen = blob;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    preview.src = previewUrl;
    preview.hidden = false;
    result.replaceChildren();
  }
  file.addEventListener("change", () => file.files[0] && choose(file.files[0]));
  const over = (event) => { event.preventDefault(); drop.classList.add("over"); };
  const leave = () => drop.classList.remove("over");
  const dropped = (event) => {
    event.preventDefault();
    leave();
    const item = event.dataTransfer?.files?.[0];
    if (item) choose(item);
  };
  document.addEventListener("dragover", over);
  document.addEventListener("dragleave", leave);
  document.addEventListener("drop", dropped);

  const form = h("form", { id: "classify-form", "aria-label": "Classify an image" },
    h("div", { class: "grid" },
      h("div", {}, h("label", { for: "classify-model" }, "Model or alias"), model),
      h("div", {}, drop, file)),
    preview, h("p", {}, submit), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!chosen) { result.textContent = "Choose an image first."; file.focus(); return; }
    const body = new FormData();
    body.append("image", chosen, chosen.name || "image");
    if (model.value) body.append("model", model.value);
    body.append("top_k", "5");
    submit.disabled = true;
    try {
      const answer = await api("predict", { method: "POST", body });
      clear(result).append(h("h2", {}, `Top ${answer.predictions.length} (model ${answer.model})`), bars(answer.predictions));
    } catch (error) {
      result.replaceChildren(h("p", { class: "field-error", role: "alert" }, describe(error)));
    } finally {
      submit.disabled = false;
    }
  });
  clear(main).append(h("h1", {}, "Classify an image"), form);
  await modelOptions(model, query.get("model"));
  return () => {
    document.removeEventListener("dragover", over);
    document.removeEventListener("dragleave", leave);
    document.removeEventListener("drop", dropped);
    if (previewUrl) URL.revokeObjectURL(previewUrl);
  };
}
