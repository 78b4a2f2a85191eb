// Jobs: every job, newest first, kept live by GET /events; filters and client-side pages
// (only the rows of the page shown are in the DOM, so thousands of jobs stay fast).

import { api, describe } from "../api.js";
import { clear, errorBox, h } from "../dom.js";
import { jobRow } from "../jobs-view.js";
import { openStream } from "../sse.js";

const PAGE_SIZE = 50;
const KINDS = ["shard", "train", "evaluate", "export", "predict"];
const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

function choice(id, label, values) {
  return h("div", {},
    h("label", { for: id }, label),
    h("select", { id }, h("option", { value: "" }, "all"), values.map((v) => h("option", { value: v }, v))),
  );
}

export async function render(main) {
  const jobs = new Map();
  let order = [];
  let page = 0;
  let scheduled = false;

  const kind = choice("filter-kind", "Kind", KINDS);
  const state = choice("filter-state", "State", STATES);
  const count = h("p", { class: "muted", "aria-live": "polite" });
  const tbody = h("tbody");
  const prev = h("button", { type: "button", class: "secondary" }, "Previous page");
  const next = h("button", { type: "button", class: "secondary" }, "Next page");
  const where = h("span", { class: "muted" });

  function shown() {
    const k = kind.querySelector("select").value;
    const s = state.querySelector("select").value;
    return order.map((id) => jobs.get(id)).filter((j) => (!k || j.kind === k) && (!s || j.state === s));
  }

  function draw() {
    scheduled = false;
    const list = shown();
    const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    tbody.replaceChildren(...list.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE).map(jobRow));
    count.textContent = `${list.length} of ${order.length} jobs`;
    where.textContent = `page ${page + 1} of ${pages}`;
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }

  function later() {
    if (!scheduled) { scheduled = true; requestAnimationFrame(draw); }
  }

  for (const select of [kind, state]) {
    select.querySelector("select").addEventListener("change", () => { page = 0; draw(); });
  }
  prev.addEventListener("click", () => { page -= 1; draw(); });
  next.addEventListener("click", () => { page += 1; draw(); });

  clear(main).append(
    h("h1", {}, "Jobs"),
    h("div", { class: "row" }, kind, state, h("p", {}, h("a", { href: "#/train" }, "New train job"), " · ", h("a", { href: "#/upload" }, "Upload a dataset"))),
    count,
    h("div", { class: "table-wrap" }, h("table", { id: "jobs-table" },
      h("thead", {}, h("tr", {}, ["Job", "Kind", "State", "Progress"].map((t) => h("th", { scope: "col" }, t)),
        h("th", { scope: "col", class: "hide-narrow" }, "What"), h("th", { scope: "col", class: "hide-narrow" }, "Created"))),
      tbody)),
    h("div", { class: "pager" }, prev, where, next),
  );

  // Subscribe first, list second: a change in between arrives as an event, not lost.
  const stream = openStream("events", ["job"], (_, job) => {
    if (!jobs.has(job.id)) order.unshift(job.id);
    jobs.set(job.id, job);
    later();
  });
  try {
    const listed = (await api("jobs")).jobs;
    for (const job of listed) if (!jobs.has(job.id)) jobs.set(job.id, job);
    const live = order.filter((id) => !listed.some((j) => j.id === id));
    order = [...live, ...listed.map((j) => j.id)];
  } catch (error) {
    main.append(errorBox(`Could not list the jobs: ${describe(error)}`));
  }
  draw();
  return () => stream.close();
}
