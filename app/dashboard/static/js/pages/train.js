// New train job: every field of the train request, read from the API's own OpenAPI schema
// (TrainConfig), so the form cannot fall behind the API. Empty fields are left out of the
// request: the server fills in the preset's or the default value (shown as placeholders).
// The API's 422 messages appear at the field they name (field-errors.js).

import { api, describe } from "../api.js";
import { clear, mount, errorBox, h } from "../dom.js";
import { showFieldErrors } from "../field-errors.js";

// What a preset changes, for the placeholders only (the server applies presets itself;
// core/train_config.py PRESETS).
const PRESET_VALUES = { writeup: {}, half: { width: 32 } };
const FALLBACK_DEFAULTS = { levels: [4, 6, 3, 2] };

function inputFor(name, schema, datasets) {
  const id = `train-${name}`;
  const common = { id, name, "aria-describedby": `${id}-hint ${id}-error` };
  if (name === "dataset" && datasets.length) {
    return h("select", common, datasets.map((d) => h("option", { value: d.name }, d.name)));
  }
  if (name === "preset") {
    const values = (schema.anyOf || []).flatMap((s) => s.enum || []);
    return h("select", common, h("option", { value: "" }, "none (the defaults)"), values.map((v) => h("option", { value: v }, v)));
  }
  const type = (schema.anyOf || [schema]).map((s) => s.type).find((t) => t !== "null");
  if (type === "integer" || type === "number") {
    return h("input", { ...common, type: "number", inputmode: type === "integer" ? "numeric" : "decimal", step: type === "integer" ? "1" : "any", min: schema.minimum, max: schema.maximum });
  }
  return h("input", { ...common, type: "text" });
}

function placeholderOf(name, schema, preset) {
  const value = PRESET_VALUES[preset]?.[name] ?? schema.default ?? FALLBACK_DEFAULTS[name];
  return Array.isArray(value) ? value.join(",") : value === undefined || value === null ? "" : String(value);
}

function valueOf(input, schema) {
  const text = input.value.trim();
  if (text === "") return undefined;
  const type = (schema.anyOf || [schema]).map((s) => s.type).find((t) => t !== "null");
  if (type === "array") {
    const parts = text.split(/[\s,]+/).filter(Boolean);
    return parts.every((p) => /^-?\d+$/.test(p)) ? parts.map(Number) : text;
  }
  if (type === "integer" || type === "number") return Number.isNaN(Number(text)) ? text : Number(text);
  return text;
}

export async function render(main, _params, query) {
  let schema;
  let datasets = [];
  try {
    const openapi = await api("openapi.json");
    schema = openapi.components.schemas.TrainConfig;
    datasets = (await api("datasets")).datasets;
  } catch (error) {
    mount(main, h("h1", {}, "New train job"), errorBox(describe(error)));
    return;
  }
  const names = Object.keys(schema.properties);
  const ids = Object.fromEntries(names.map((n) => [n, `train-${n}`]));
  const inputs = {};
  const fields = names.map((name) => {
    const prop = schema.properties[name];
    const input = inputFor(name, prop, datasets);
    inputs[name] = input;
    const hint = [prop.description, name === "levels" ? "comma-separated, e.g. 1,1" : ""].filter(Boolean).join("; ");
    return h("div", {},
      h("label", { for: ids[name] }, prop.title || name),
      input,
      h("p", { class: "hint", id: `${ids[name]}-hint` }, hint),
      h("p", { class: "field-error", id: `${ids[name]}-error`, role: "alert", tabindex: "-1" }));
  });
  const refreshPlaceholders = () => {
    for (const name of names) if (inputs[name].tagName === "INPUT") inputs[name].placeholder = placeholderOf(name, schema.properties[name], inputs.preset.value);
  };
  inputs.preset.addEventListener("change", refreshPlaceholders);
  for (const [key, value] of query) if (inputs[key]) inputs[key].value = value;
  refreshPlaceholders();

  const formError = h("p", { class: "field-error", id: "train-form-error", role: "alert", tabindex: "-1" });
  const form = h("form", { id: "train-form", "aria-label": "New train job", novalidate: true },
    h("div", { class: "grid" }, fields), formError, h("button", { type: "submit", id: "train-submit" }, "Start training"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const name of names) {
      const value = valueOf(inputs[name], schema.properties[name]);
      if (value !== undefined) body[name] = value;
    }
    showFieldErrors(form, ids, "train-form-error", null);
    try {
      const job = await api("jobs/train", { method: "POST", json: body });
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (error) {
      showFieldErrors(form, ids, "train-form-error", error);
    }
  });
  mount(main, h("h1", {}, "New train job"),
    datasets.length ? null : h("p", { class: "muted" }, "No dataset yet: ", h("a", { href: "#/upload" }, "upload and shard one"), " first."),
    form);
}
