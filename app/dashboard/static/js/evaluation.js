// A model's evaluation (GET /models/{id}/evaluation): top-1/top-5, a per-class table
// sortable by F1 (or any column), the confusion image, the worst files. A 404 means
// "not evaluated yet", with a button that asks for it (POST /jobs/evaluate).

import { ApiError, api, describe, imageUrl } from "./api.js";
import { clear, errorBox, fmtNumber, h, keyValues } from "./dom.js";

const COLUMNS = [["label", "Class"], ["precision", "Precision"], ["recall", "Recall"], ["f1", "F1"], ["support", "Support"]];

function perClassTable(rows) {
  let key = "f1";
  let descending = true;
  const tbody = h("tbody");
  const heads = COLUMNS.map(([k, title]) => {
    const button = h("button", { type: "button" }, title);
    const th = h("th", { scope: "col", class: k === "label" ? "" : "num" }, button);
    button.addEventListener("click", () => { descending = key === k ? !descending : k !== "label"; key = k; draw(); });
    return [k, th];
  });
  function draw() {
    const sorted = [...rows].sort((a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0) * (descending ? -1 : 1));
    tbody.replaceChildren(...sorted.map((r) => h("tr", {}, COLUMNS.map(([k]) => h("td", { class: k === "label" ? "" : "num" }, k === "label" ? `${r.label} (${r.wnid})` : fmtNumber(r[k], 3))))));
    for (const [k, th] of heads) {
      if (k === key) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
  }
  draw();
  return h("div", { class: "table-wrap" }, h("table", { id: "per-class" }, h("caption", { class: "muted" }, "Per class; choose a column heading to sort"), h("thead", {}, h("tr", {}, heads.map(([, th]) => th))), tbody));
}

function showEvaluation(slot, id, ev) {
  const confusion = h("img", { class: "preview", id: "confusion", alt: `Confusion matrix of model ${id} on ${ev.dataset} ${ev.split}` });
  clear(slot).append(
    keyValues([["top-1", fmtNumber(ev.top1, 3)], ["top-5", fmtNumber(ev.top5, 3)], ["loss", fmtNumber(ev.loss)],
      ["macro F1", fmtNumber(ev.macro?.f1, 3)], ["images", `${ev.count} (${ev.dataset}, ${ev.split})`]]),
    h("h3", {}, "Per class"), perClassTable(ev.per_class || []),
    h("h3", {}, "Confusion matrix"), confusion,
    h("h3", {}, "Worst files"),
    h("ol", { id: "worst" }, (ev.worst || []).map((w) => h("li", {}, `${w.file}: true ${w.true}, predicted ${w.predicted} (${fmtNumber(w.probability, 3)})`))),
  );
  imageUrl(`models/${encodeURIComponent(id)}/confusion.png`).then((u) => { confusion.src = u; })
    .catch((error) => confusion.replaceWith(errorBox(`No confusion image: ${describe(error)}`)));
}

export function evaluationSection(id, model) {
  const slot = h("div", { id: "evaluation" }, h("p", { class: "muted" }, "Loading…"));
  const section = h("section", { "aria-label": "Evaluation" }, h("h2", {}, "Evaluation"), slot);
  api(`models/${encodeURIComponent(id)}/evaluation`).then((ev) => showEvaluation(slot, id, ev)).catch((error) => {
    if (!(error instanceof ApiError) || error.status !== 404) { clear(slot).append(errorBox(describe(error))); return; }
    const ask = h("button", { type: "button", class: "secondary", id: "evaluate" }, "Evaluate now");
    const outcome = h("p", { "aria-live": "polite" });
    ask.addEventListener("click", async () => {
      try {
        const job = await api("jobs/evaluate", { method: "POST", json: { model: id, dataset: model.dataset } });
        outcome.replaceChildren("Evaluation started: ", h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id));
      } catch (err) {
        outcome.textContent = err instanceof ApiError && err.status === 404 ? "Evaluation is not available on this server yet." : describe(err);
      }
    });
    clear(slot).append(h("p", {}, "not evaluated yet"), ask, outcome);
  });
  return section;
}
