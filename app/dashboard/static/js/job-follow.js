// Following a job that a section of a page started (an evaluation, an export): a progress
// bar fed by GET /jobs/{id}/events, and a callback with the whole Job when it ends.

import { h, progressBar } from "./dom.js";
import { openStream } from "./sse.js";

/**
 * Follow job `job` (as POST answered it). `fraction(progress)` reads 0..1 from the job's
 * progress, `text(progress, state)` the words beside the bar. Returns {el, close()};
 * `el` holds the bar and a link to the job's own page; onEnd(job) runs once, at the end.
 */
export function followJob(job, { label, fraction, text }, onEnd) {
  const bar = progressBar(label);
  const words = h("span", { class: "muted" }, "waiting for a worker");
  const el = h("div", { class: "job-follow" },
    h("p", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, `${job.kind} job ${job.id}`), " · ", words),
    bar.el);
  function draw(state, progress = {}) {
    const said = text(progress, state);
    bar.set(fraction(progress), said);
    words.textContent = said;
  }
  draw(job.state, job.progress || {});
  const stream = openStream(`jobs/${encodeURIComponent(job.id)}/events`, ["progress", "state", "end"], (name, data) => {
    if (name === "end") {
      if (data.state === "succeeded") bar.set(1, "done");
      onEnd(data);
    } else if (name === "progress") {
      draw(data.state, data.progress || {});
    } else {
      words.textContent = data.state;
    }
  });
  return { el, close: () => stream.close() };
}
