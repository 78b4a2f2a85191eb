// A model's evaluation (GET /models/{id}/evaluation, a core.evaluation.Evaluation): top-1,
// top-5, loss, macro precision/recall/F1, a per-class table sortable by F1 (or any column),
// the confusion image, the worst files. A 404 means "not evaluated yet": while its train
// job is still running, that job evaluates it (followed here); otherwise a button asks for
// it (POST /jobs/evaluate) and the section follows that job to its result.

import { ApiError, api, describe, imageUrl } from "./api.js";
import { errorBox, fmtNumber, fmtRate, h, keyValues, mount } from "./dom.js";
import { followJob } from "./job-follow.js";

const COLUMNS = [["label", "Class"], ["precision", "Precision"], ["recall", "Recall"], ["f1", "F1"], ["support", "Support"]];
const FINISHED = ["succeeded", "failed", "cancelled"];

function figure(id, value) {
  return h("span", { id, "data-value": String(value) }, fmtRate(value));
}

function perClassTable(rows) {
  let key = "f1";
  let descending = true;
  const tbody = h("tbody");
  const heads = COLUMNS.map(([k, title]) => {
    const button = h("button", { type: "button", "data-sort": k }, title);
    const th = h("th", { scope: "col", class: k === "label" ? "" : "num" }, button);
    button.addEventListener("click", () => { descending = key === k ? !descending : k !== "label"; key = k; draw(); });
    return [k, th];
  });
  const value = (row, k) => (k === "label" ? `${row.label} ${row.wnid}` : row[k]);
  function draw() {
    const sign = descending ? -1 : 1;
    const sorted = [...rows].sort((a, b) => {
      const [x, y] = [value(a, key), value(b, key)];
      return (x < y ? -1 : x > y ? 1 : 0) * sign || a.class_index - b.class_index;
    });
    tbody.replaceChildren(...sorted.map((r) => h("tr", { "data-class": r.wnid }, COLUMNS.map(([k]) => (k === "label"
      ? h("th", { scope: "row" }, `${r.label} (${r.wnid})`)
      : h("td", { class: "num", "data-col": k, "data-value": String(r[k]) }, k === "support" ? String(r[k]) : fmtRate(r[k])))))));
    for (const [k, th] of heads) {
      if (k === key) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
  }
  draw();
  return h("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": "Per-class scores" }, h("table", { id: "per-class" },
    h("caption", { class: "muted" }, "Per class; choose a column heading to sort by it (again to reverse)"),
    h("thead", {}, h("tr", {}, heads.map(([, th]) => th))), tbody));
}

const classNames = (ev) => Object.fromEntries((ev.per_class || []).map((c) => [c.wnid, `${c.label} (${c.wnid})`]));

function worstTable(ev) {
  const names = classNames(ev);
  const worst = ev.worst || [];
  if (!worst.length) return h("p", { id: "worst", class: "muted" }, "No image was misclassified.");
  return h("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": "Worst files" }, h("table", { id: "worst" },
    h("caption", { class: "muted" }, "Misclassified images, lowest probability of the true class first"),
    h("thead", {}, h("tr", {}, ["File", "True class", "p(true)", "Predicted", "p(predicted)"].map((t, i) => h("th", { scope: "col", class: i % 2 === 0 && i ? "num" : "" }, t)))),
    h("tbody", {}, worst.map((w) => h("tr", {},
      h("td", { class: "file" }, w.file), h("td", {}, names[w.true] || w.true), h("td", { class: "num" }, fmtRate(w.probability)),
      h("td", {}, names[w.predicted] || w.predicted), h("td", { class: "num" }, fmtRate(w.predicted_probability)))))));
}

function showEvaluation(slot, id, ev) {
  const confusion = h("img", { class: "figure", id: "confusion", alt: `Confusion matrix of model ${id} on ${ev.dataset} (${ev.split})` });
  const macro = ev.macro || {};
  const names = classNames(ev);
  mount(slot,
    keyValues([
      ["top-1", figure("eval-top1", ev.top1)], ["top-5", figure("eval-top5", ev.top5)], ["loss", fmtNumber(ev.loss)],
      ["macro precision", figure("eval-macro-precision", macro.precision)], ["macro recall", figure("eval-macro-recall", macro.recall)],
      ["macro F1", figure("eval-macro-f1", macro.f1)], ["images", `${ev.count} (${ev.dataset}, ${ev.split} split)`],
    ]),
    h("h3", {}, "Per class"), perClassTable(ev.per_class || []),
    h("h3", {}, "Confusion matrix"), confusion,
    (ev.most_confused || []).length ? h("p", { class: "muted", id: "most-confused" }, "Most confused: ",
      ev.most_confused.slice(0, 5).map((p) => `${names[p.true] || p.true} → ${names[p.predicted] || p.predicted} (${p.count})`).join(", ")) : null,
    h("h3", {}, "Worst files"), worstTable(ev),
  );
  imageUrl(`models/${encodeURIComponent(id)}/confusion.png`).then((u) => { confusion.src = u; })
    .catch((error) => confusion.replaceWith(errorBox(`No confusion image: ${describe(error)}`)));
}

const evaluateProgress = {
  label: "Evaluation progress",
  fraction: (p) => p.fraction,
  text: (p, state) => (typeof p.images === "number" ? `${p.images} images evaluated` : state === "queued" ? "waiting for a worker" : state),
};

const trainProgress = {
  label: "Training and evaluation progress",
  fraction: (p) => (p.phase === "evaluation" ? p.evaluation : p.fraction),
  text: (p, state) => (p.phase === "evaluation" ? `evaluating: ${p.evaluated_images ?? 0} images` : state === "queued" ? "waiting for a worker" : "training; the evaluation follows"),
};

/** The section, and close() for its streams. */
export function evaluationSection(id) {
  const slot = h("div", { id: "evaluation", tabindex: "-1" }, h("p", { class: "muted" }, "Loading…"));
  let followed = null;
  const follow = (job, how, onFailure) => {
    followed?.close();
    followed = followJob(job, how, (done) => {
      followed = null;
      if (done.state !== "succeeded") { onFailure(done); return; }
      load(done.kind === "evaluate" ? done.result : null).then(() => {
        if (document.activeElement === document.body) slot.focus(); // its button is gone
      });
    });
    return followed.el;
  };

  function offer(message) {
    const ask = h("button", { type: "button", id: "evaluate" }, "Evaluate on val");
    const outcome = h("div", { id: "evaluate-outcome" });
    ask.addEventListener("click", async () => {
      ask.disabled = true;
      try {
        const job = await api("jobs/evaluate", { method: "POST", json: { model: id } });
        mount(outcome, follow(job, evaluateProgress, (done) => {
          ask.disabled = false;
          mount(outcome, errorBox(`The evaluate job ${done.state}${done.error ? `: ${done.error}` : ""}`));
        }));
      } catch (err) {
        ask.disabled = false;
        mount(outcome, errorBox(err instanceof ApiError && err.status === 404 ? "Evaluation is not available on this server yet." : describe(err)));
      }
    });
    mount(slot, h("p", {}, "not evaluated yet"), message ? h("p", { class: "muted" }, message) : null, ask, outcome);
  }

  async function load(fallback = null) {
    try {
      showEvaluation(slot, id, await api(`models/${encodeURIComponent(id)}/evaluation`));
      return;
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) { mount(slot, errorBox(describe(error))); return; }
    }
    if (fallback) { showEvaluation(slot, id, fallback); return; }
    let trainJob = null;
    try { trainJob = await api(`jobs/${encodeURIComponent(id)}`); } catch { /* a model without its job: offer the button */ }
    if (trainJob && !FINISHED.includes(trainJob.state)) {
      mount(slot, h("p", {}, "not evaluated yet: its train job evaluates it before it ends"),
        follow(trainJob, trainProgress, (done) => offer(`Its train job ${done.state}${done.error ? `: ${done.error}` : ""}.`)));
      return;
    }
    offer(trainJob?.state === "succeeded" ? "Its train job ended without an evaluation." : null);
  }

  load();
  const el = h("section", { "aria-label": "Evaluation" }, h("h2", {}, "Evaluation"), slot);
  return { el, close: () => followed?.close() };
}

