// The form that shards a source (POST /jobs/shard), on the Upload page.

import { api, describe } from "./api.js";
import { h } from "./dom.js";
import { showFieldErrors } from "./field-errors.js";

function field(id, label, input, hint) {
  return h("div", {}, h("label", { for: id }, label), input, hint ? h("p", { class: "hint" }, hint) : null,
    h("p", { class: "field-error", id: `${id}-error`, role: "alert" }));
}

/** Returns {el, use(source)}: use() fills in a source and a dataset name from it. */
export function shardForm() {
  const ids = { source: "shard-source", dataset: "shard-dataset", num_shards: "shard-num_shards", compression: "shard-compression", seed: "shard-seed" };
  const source = h("input", { id: ids.source, name: "source", required: true, "aria-describedby": "shard-source-error" });
  const dataset = h("input", { id: ids.dataset, name: "dataset", required: true, "aria-describedby": "shard-dataset-error" });
  const shards = h("input", { id: ids.num_shards, name: "num_shards", type: "number", value: "10", "aria-describedby": "shard-num_shards-error" });
  const compression = h("select", { id: ids.compression, name: "compression" }, h("option", { value: "GZIP" }, "GZIP"), h("option", { value: "NONE" }, "NONE"));
  const seed = h("input", { id: ids.seed, name: "seed", type: "number", value: "0", "aria-describedby": "shard-seed-error" });
  const outcome = h("p", { id: "shard-outcome", "aria-live": "polite" });
  const form = h("form", { id: "shard-form", "aria-label": "Shard a source", novalidate: true },
    h("h2", {}, "Shard it"),
    h("div", { class: "grid" },
      field(ids.source, "Source", source, "a path under the data root: uploads/NAME.zip, …"),
      field(ids.dataset, "Dataset name", dataset),
      field(ids.num_shards, "Shards", shards),
      field(ids.compression, "Compression", compression),
      field(ids.seed, "Seed", seed)),
    h("p", { class: "field-error", id: "shard-form-error", role: "alert" }),
    h("button", { type: "submit", id: "shard-submit" }, "Start the shard job"),
    outcome);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { source: source.value.trim(), dataset: dataset.value.trim(), num_shards: Number(shards.value), compression: compression.value, seed: Number(seed.value) };
    showFieldErrors(form, ids, "shard-form-error", null);
    try {
      const job = await api("jobs/shard", { method: "POST", json: body });
      outcome.replaceChildren("Shard job started: ", h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, id: "shard-job-link" }, job.id));
    } catch (error) {
      showFieldErrors(form, ids, "shard-form-error", error) || (form.querySelector("#shard-form-error").textContent = describe(error));
    }
  });
  function use(path) {
    source.value = path;
    const stem = path.split("/").pop().replace(/\.(zip|tar\.gz|tgz|tar)$/i, "").replace(/[^A-Za-z0-9_-]/g, "-").replace(/^[^A-Za-z0-9]+/, "");
    if (!dataset.value) dataset.value = stem.slice(0, 64) || "dataset";
  }
  return { el: form, use };
}
