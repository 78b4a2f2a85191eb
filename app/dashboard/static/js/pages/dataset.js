// A dataset: its preview grid, classes with their counts per split, skipped files.

import { api, describe, imageUrl } from "../api.js";
import { clear, errorBox, fmtBytes, h, keyValues, table } from "../dom.js";

export async function render(main, [name]) {
  let dataset;
  try {
    dataset = await api(`datasets/${encodeURIComponent(name)}`);
  } catch (error) {
    clear(main).append(h("h1", {}, `Dataset ${name}`), errorBox(describe(error)));
    return undefined;
  }
  const splits = Object.entries(dataset.splits || {});
  const preview = h("img", { class: "preview", id: "dataset-preview", alt: `A grid of preprocessed training images of ${name}, labelled with their classes`, width: "512" });
  const classRows = dataset.classes.map((c) => [String(c.index), c.wnid, c.label, ...splits.map(([, s]) => String(s.per_class?.[c.wnid] ?? 0))]);
  const skipped = splits.flatMap(([split, s]) => (s.skipped || []).map((f) => [split, f.file, f.reason]));
  clear(main).append(
    h("h1", {}, `Dataset ${name}`),
    h("p", {}, h("a", { href: `#/train?dataset=${encodeURIComponent(name)}` }, "Train a model on it")),
    h("section", { "aria-label": "Summary" }, keyValues([
      ["source", dataset.source], ["classes", String(dataset.classes.length)],
      ...splits.map(([split, s]) => [`${split} images`, `${s.count} in ${s.shards.length} shards, ${fmtBytes(s.bytes)}`]),
      ["compression", dataset.compression], ["skipped files", String(dataset.skipped)],
    ])),
    h("section", { "aria-label": "Preview" }, h("h2", {}, "Preview"), preview),
    h("section", { "aria-label": "Classes" }, h("h2", {}, "Classes"),
      table(null, ["Index", "wnid", "Label", ...splits.map(([split]) => `${split} images`)], classRows)),
    h("section", { "aria-label": "Skipped files" }, h("h2", {}, "Skipped files"),
      skipped.length ? table(null, ["Split", "File", "Reason"], skipped) : h("p", { class: "muted" }, "none")),
  );
  let url = null;
  imageUrl(`datasets/${encodeURIComponent(name)}/preview.png`)
    .then((u) => { url = u; preview.src = u; })
    .catch((error) => preview.replaceWith(errorBox(`No preview: ${describe(error)}`)));
  return () => url && URL.revokeObjectURL(url);
}
