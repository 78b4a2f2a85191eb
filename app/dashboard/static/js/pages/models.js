// Models: one per succeeded train job, with its final metrics and aliases.

import { api, describe } from "../api.js";
import { clear, errorBox, fmtNumber, fmtTime, h, table } from "../dom.js";

export async function render(main) {
  clear(main).append(h("h1", {}, "Models"));
  try {
    const { models } = await api("models");
    const rows = models.map((m) => [
      h("a", { href: `#/models/${encodeURIComponent(m.id)}` }, m.id),
      m.dataset,
      `${m.width} / [${m.levels.join(",")}]`,
      String(m.epochs),
      fmtNumber(m.metrics?.val_accuracy),
      (m.aliases || []).join(", ") || "–",
      fmtTime(m.created_at),
    ]);
    main.append(rows.length
      ? table(null, ["Model", "Dataset", "Width / levels", "Epochs", "Val accuracy", "Aliases", "Created"], rows)
      : h("p", { class: "muted" }, "No model yet: ", h("a", { href: "#/train" }, "train one"), "."));
  } catch (error) {
    main.append(errorBox(describe(error)));
  }
}
