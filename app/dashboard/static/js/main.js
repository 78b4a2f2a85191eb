// The dashboard's router: "#/jobs", "#/jobs/ID", "#/upload", "#/train?dataset=X", ...
// Each page module exports render(main, params, query) and may return a cleanup function
// (closing its event streams) that runs when the user leaves the page.

import { checkKeyOnce, setUpKeyPrompt } from "./key.js";
import { h } from "./dom.js";

const ROUTES = [
  [/^#\/jobs\/([^/?]+)$/, "jobs", () => import("./pages/job.js")],
  [/^#\/jobs$/, "jobs", () => import("./pages/jobs.js")],
  [/^#\/upload$/, "upload", () => import("./pages/upload.js")],
  [/^#\/train$/, "train", () => import("./pages/train.js")],
  [/^#\/datasets\/([^/?]+)$/, "datasets", () => import("./pages/dataset.js")],
  [/^#\/datasets$/, "datasets", () => import("./pages/datasets.js")],
  [/^#\/models\/([^/?]+)$/, "models", () => import("./pages/model.js")],
  [/^#\/models$/, "models", () => import("./pages/models.js")],
  [/^#\/classify$/, "classify", () => import("./pages/classify.js")],
];

let cleanup = null;
let generation = 0;

function markNav(section) {
  for (const link of document.querySelectorAll(".top nav a")) {
    if (link.getAttribute("href") === `#/${section}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  const [path, search = ""] = (location.hash || "#/jobs").split("?");
  const match = ROUTES.map(([re, section, load]) => [path.match(re), section, load]).find(([m]) => m);
  if (!match) { location.replace("#/jobs"); return; }
  const [found, section, load] = match;
  if (cleanup) { cleanup(); cleanup = null; }
  const mine = ++generation;
  const main = document.getElementById("main");
  main.removeAttribute("data-ready");
  markNav(section);
  const page = await load();
  if (mine !== generation) return;
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  const params = found.slice(1).map(decodeURIComponent);
  try {
    cleanup = (await page.render(main, params, new URLSearchParams(search))) || null;
  } catch (error) {
    main.replaceChildren(h("h1", {}, "Something went wrong"), h("p", { role: "alert" }, String(error.message || error)));
  }
  if (mine !== generation) return;
  const heading = main.querySelector("h1");
  document.title = heading ? `${heading.textContent} · tinyres` : "tinyres dashboard";
  main.focus({ preventScroll: true });
  main.dataset.ready = section;
}

setUpKeyPrompt(route);
window.addEventListener("hashchange", route);
route();
checkKeyOnce();
