// One row of the jobs table and the summary of what a job is about.

import { fmtTime, h, progressBar, stateBadge } from "./dom.js";

export function jobSubject(job) {
  const p = job.params || {};
  if (job.kind === "shard") return `${p.source ?? "?"} → ${p.dataset ?? "?"}`;
  if (job.kind === "train") {
    const resumed = p.resume_from ? `, resumes ${p.resume_from}` : "";
    return `${p.dataset ?? "?"}, width ${p.width}, levels [${(p.levels || []).join(",")}], ${p.epochs} epochs${resumed}`;
  }
  return p.model ? `model ${p.model}` : "";
}

export function jobRow(job) {
  const bar = progressBar(`Progress of job ${job.id}`);
  bar.set(job.progress?.fraction ?? (job.state === "succeeded" ? 1 : 0));
  return h("tr", { "data-job": job.id },
    h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id)),
    h("td", {}, job.kind),
    h("td", {}, stateBadge(job.state)),
    h("td", {}, bar.el),
    h("td", { class: "hide-narrow" }, jobSubject(job)),
    h("td", { class: "hide-narrow" }, fmtTime(job.created_at)),
  );
}
