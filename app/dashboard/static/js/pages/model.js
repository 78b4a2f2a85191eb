// A model: what it is, its final metrics, its evaluation, aliases and exports.

import { api, describe } from "../api.js";
import { clear, errorBox, fmtNumber, fmtTime, h, keyValues } from "../dom.js";
import { evaluationSection } from "../evaluation.js";
import { aliasSection, exportSection } from "../registry.js";

export async function render(main, [id]) {
  let model;
  try {
    model = await api(`models/${encodeURIComponent(id)}`);
  } catch (error) {
    clear(main).append(h("h1", {}, `Model ${id}`), errorBox(describe(error)));
    return undefined;
  }
  const evaluation = evaluationSection(id);
  const exports = exportSection(id);
  clear(main).append(
    h("h1", {}, `Model ${id}`),
    h("p", {}, h("a", { href: `#/jobs/${encodeURIComponent(id)}` }, "Its train job"), " · ",
      h("a", { href: `#/classify?model=${encodeURIComponent(id)}` }, "Classify with it"), " · ",
      h("a", { href: `#/train?dataset=${encodeURIComponent(model.dataset)}&resume_from=${encodeURIComponent(id)}` }, "Train it further")),
    h("section", { "aria-label": "Model" }, keyValues([
      ["dataset", h("a", { href: `#/datasets/${encodeURIComponent(model.dataset)}` }, model.dataset)],
      ["width", String(model.width)], ["levels", `[${model.levels.join(", ")}]`], ["epochs", String(model.epochs)],
      ["classes", String(model.classes.length)], ["created", fmtTime(model.created_at)],
    ])),
    h("section", { "aria-label": "Final metrics" }, h("h2", {}, "Final metrics"),
      Object.keys(model.metrics || {}).length ? keyValues(Object.entries(model.metrics).map(([k, v]) => [k, fmtNumber(v)])) : h("p", { class: "muted" }, "none recorded")),
    evaluation.el,
    aliasSection(id),
    exports.el,
  );
  return () => { evaluation.close(); exports.close(); };
}
