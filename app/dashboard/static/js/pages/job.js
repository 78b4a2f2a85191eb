// A job: state, live progress (GET /jobs/{id}/events), metrics, curves, log tail
// (GET /jobs/{id}/logs?follow=true), cancel, resume for more epochs, its parameters.

import { api, describe } from "../api.js";
import { lineChart } from "../chart.js";
import { clear, mount, errorBox, fmtNumber, fmtSeconds, fmtTime, h, keyValues, progressBar, stateBadge } from "../dom.js";
import { jobSubject } from "../jobs-view.js";
import { followText, openStream } from "../sse.js";

const FINISHED = ["succeeded", "failed", "cancelled"];
const LOG_LINES = 200;

function speedMeter() {
  let last = null;
  return (job) => {
    const p = job.progress || {};
    if (typeof p.step !== "number" || typeof p.steps !== "number") return null;
    const done = ((p.epoch || 1) - 1) * p.steps + p.step;
    const now = performance.now();
    const batch = job.params?.batch_size || 1;
    let rate = null;
    if (last && done > last.done && now > last.now) rate = ((done - last.done) * batch * 1000) / (now - last.now);
    if (!last || done !== last.done) last = { done, now };
    return rate;
  };
}

function progressText(job, rate) {
  const p = job.progress || {};
  const parts = [];
  if (p.epoch !== undefined) parts.push(`epoch ${p.epoch}/${p.epochs ?? job.params?.epochs ?? "?"}`);
  if (p.step !== undefined) parts.push(`step ${p.step}/${p.steps ?? "?"}`);
  if (p.eta_seconds !== undefined && p.eta_seconds !== null) parts.push(`ETA ${fmtSeconds(p.eta_seconds)}`);
  if (rate) parts.push(`${Math.round(rate)} images/s`);
  return parts.join(" · ") || (job.state === "queued" ? "waiting for a worker" : "");
}

function resumeForm(job) {
  const epochs = h("input", { id: "resume-epochs", type: "number", min: String((job.params?.epochs || 0) + 1), value: String((job.params?.epochs || 0) + 5) });
  const error = h("p", { class: "field-error", id: "resume-error", role: "alert" });
  const form = h("form", { "aria-label": "Resume training" },
    h("h2", {}, "Resume for more epochs"),
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "resume-epochs" }, "Total epochs"), epochs),
      h("button", { type: "submit" }, "Resume training")),
    error);
  epochs.setAttribute("aria-describedby", "resume-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = Object.fromEntries(Object.entries(job.params || {}).filter(([k, v]) => v !== null && k !== "initial_epoch" && k !== "preset"));
    try {
      const created = await api("jobs/train", { method: "POST", json: { ...params, resume_from: job.id, epochs: Number(epochs.value) } });
      location.hash = `#/jobs/${encodeURIComponent(created.id)}`;
    } catch (err) {
      error.textContent = describe(err);
    }
  });
  return form;
}

export async function render(main, [id]) {
  let job;
  try {
    job = await api(`jobs/${encodeURIComponent(id)}`);
  } catch (error) {
    mount(main, h("h1", {}, `Job ${id}`), errorBox(describe(error)));
    return undefined;
  }
  const controller = new AbortController();
  const bar = progressBar("Job progress", { big: true });
  const status = h("p", { id: "job-status", "aria-live": "polite" });
  const detail = h("p", { id: "job-progress-text", class: "muted" });
  const metrics = h("div", { id: "job-metrics" });
  const actions = h("div", { class: "row", id: "job-actions" });
  const loss = lineChart("Loss per epoch", ["loss", "val_loss"]);
  const accuracy = lineChart("Accuracy per epoch", ["accuracy", "val_accuracy"]);
  const log = h("pre", { class: "log", id: "job-log", tabindex: "0", "aria-label": "Job log" });
  const params = h("div", { id: "job-params" });
  const speed = speedMeter();
  let history = [...(job.history || [])];

  function draw() {
    clear(status).append("State: ", stateBadge(job.state), job.error ? ` — ${job.error}` : "");
    bar.set(job.state === "succeeded" ? 1 : job.progress?.fraction, progressText(job, null));
    detail.textContent = progressText(job, speed(job));
    clear(metrics).append(Object.keys(job.metrics || {}).length
      ? keyValues(Object.entries(job.metrics).map(([k, v]) => [k, fmtNumber(v)]))
      : h("p", { class: "muted" }, "no metrics yet"));
    loss.update(history);
    accuracy.update(history);
    drawActions();
  }

  function drawActions() {
    clear(actions);
    if (!FINISHED.includes(job.state)) {
      const cancel = h("button", { type: "button", class: "danger", id: "cancel-job" }, "Cancel job");
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        try { job = { ...job, ...(await api(`jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST" })) }; draw(); }
        catch (err) { actions.append(errorBox(describe(err))); cancel.disabled = false; }
      });
      actions.append(cancel);
    }
    if (job.kind === "train" && job.state === "succeeded") actions.append(h("a", { href: `#/models/${encodeURIComponent(job.id)}` }, "Open its model"));
    if (job.kind === "shard" && job.state === "succeeded" && job.result?.dataset) actions.append(h("a", { href: `#/datasets/${encodeURIComponent(job.result.dataset)}` }, "Open the dataset"));
  }

  mount(main, 
    h("h1", {}, `${job.kind} job ${job.id}`),
    h("p", { class: "muted" }, jobSubject(job), ` · created ${fmtTime(job.created_at)}`),
    h("section", { "aria-label": "Progress" }, status, bar.el, detail, actions),
    h("section", { "aria-label": "Metrics" }, h("h2", {}, "Metrics"), metrics),
    job.kind === "train" ? h("section", { "aria-label": "Curves" }, h("h2", {}, "Curves"), h("div", { class: "charts" }, loss.el, accuracy.el)) : null,
    job.kind === "train" && FINISHED.includes(job.state) ? resumeForm(job) : null,
    h("section", { "aria-label": "Log" }, h("h2", {}, "Log"), log),
    h("section", { "aria-label": "Parameters" }, h("h2", {}, "Parameters"), params),
  );
  params.append(keyValues(Object.entries(job.params || {}).map(([k, v]) => [k, JSON.stringify(v)])));
  if (job.result) params.append(h("h2", {}, "Result"), keyValues(Object.entries(job.result).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)])));
  draw();

  const stream = openStream(`jobs/${encodeURIComponent(job.id)}/events`, ["progress", "epoch", "state", "end"], (name, data) => {
    if (name === "epoch") history = [...history.filter((e) => e.epoch !== data.epoch), data];
    else if (name === "end") { job = data; history = [...(data.history || history)]; }
    else job = { ...job, ...data };
    draw();
  });
  followText(`jobs/${encodeURIComponent(job.id)}/logs?tail=${LOG_LINES}&follow=true`, (text) => {
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(text);
    if (atEnd) log.scrollTop = log.scrollHeight;
  }, controller.signal).catch(() => {});
  return () => { stream.close(); controller.abort(); };
}
