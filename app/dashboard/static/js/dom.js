// Small DOM helpers: an element builder, a progress bar, number and time formats.

/** h("a", {href: "#/x", class: "y"}, "text", child): attributes, then children. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

/** A role="progressbar" element; set(fraction) updates the bar and aria-valuenow (0..100). */
export function progressBar(label, { big = false } = {}) {
  const fill = h("div", { class: "fill" });
  const pct = h("span", { class: "pct", "aria-hidden": "true" }, "0%");
  const el = h("div", {
    class: big ? "progress big" : "progress",
    role: "progressbar",
    "aria-label": label,
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuenow": "0",
  }, fill, pct);
  function set(fraction, text) {
    const value = Math.max(0, Math.min(100, Math.round((fraction || 0) * 100)));
    el.setAttribute("aria-valuenow", String(value));
    el.setAttribute("aria-valuetext", text ? `${value}% (${text})` : `${value}%`);
    fill.style.width = `${value}%`;
    pct.textContent = `${value}%`;
  }
  return { el, set };
}

export function stateBadge(state) {
  return h("span", { class: `state state-${state}` }, state);
}

export function fmtNumber(value, digits = 4) {
  if (typeof value !== "number") return value === undefined || value === null ? "–" : String(value);
  return Number.isInteger(value) ? String(value) : value.toPrecision(digits);
}

/** A share (0..1) as the dashboard shows it: three decimals (1 is "1.000"). */
export function fmtRate(value) {
  return typeof value === "number" ? value.toFixed(3) : "–";
}

export function fmtBytes(bytes) {
  if (typeof bytes !== "number") return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function fmtSeconds(seconds) {
  if (typeof seconds !== "number") return "–";
  const s = Math.round(seconds);
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso.endsWith("Z") || iso.includes("+") ? iso : `${iso}Z`);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** A <dl> of key/value pairs. */
export function keyValues(entries) {
  return h("dl", { class: "kv" }, entries.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** A table with a header row; rows are arrays of cells (strings or nodes). */
export function table(caption, headers, rows) {
  return h("div", { class: "table-wrap" }, h("table", {},
    caption ? h("caption", { class: "muted" }, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((head) => h("th", { scope: "col" }, head)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell))))),
  ));
}

export function errorBox(message) {
  return h("p", { class: "field-error", role: "alert" }, message);
}

/** Replace the children of `element` (null, undefined and false are left out). */
export function mount(element, ...children) {
  element.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}
