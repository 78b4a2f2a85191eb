// Datasets: every shard set, with its size and class count.

import { api, describe } from "../api.js";
import { clear, errorBox, fmtBytes, fmtTime, h, table } from "../dom.js";

export async function render(main) {
  clear(main).append(h("h1", {}, "Datasets"));
  try {
    const { datasets } = await api("datasets");
    const rows = datasets.map((d) => [
      h("a", { href: `#/datasets/${encodeURIComponent(d.name)}` }, d.name),
      String(d.classes.length),
      String(d.splits?.train?.count ?? "–"),
      String(d.splits?.val?.count ?? "–"),
      fmtBytes(d.bytes),
      String(d.skipped),
      fmtTime(d.created_at),
    ]);
    main.append(rows.length
      ? table(null, ["Dataset", "Classes", "Train images", "Val images", "Size", "Skipped", "Created"], rows)
      : h("p", { class: "muted" }, "No dataset yet: ", h("a", { href: "#/upload" }, "upload and shard one"), "."));
  } catch (error) {
    main.append(errorBox(describe(error)));
  }
}
