// A small SVG line chart: one y axis, epochs on x, a few named series. Redrawn whole on
// update (a few hundred points at most), so it simply grows as epochs end.

const NS = "http://www.w3.org/2000/svg";
const W = 480;
const H = 220;
const PAD = { left: 48, right: 12, top: 12, bottom: 28 };
const COLORS = ["#1f5fbf", "#c0392b", "#1b7a3a", "#8a5a00"];

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function bounds(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo)) return [0, 1];
  if (lo === hi) { lo -= 0.5; hi += 0.5; }
  return [lo, hi];
}

/** A chart of `keys` of the history entries; returns {el, update(history)}. */
export function lineChart(title, keys) {
  const el = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  const caption = svg("title", {}, title);
  function update(history) {
    el.replaceChildren(caption);
    const points = keys.map((key) => history.filter((e) => typeof e[key] === "number").map((e) => [e.epoch, e[key]]));
    const xs = points.flat().map(([x]) => x);
    const ys = points.flat().map(([, y]) => y);
    const [x0, x1] = xs.length ? [Math.min(0, ...xs), Math.max(1, ...xs)] : [0, 1];
    const [y0, y1] = bounds(ys);
    const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
    const sy = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
    el.append(
      svg("line", { class: "axis", x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }),
      svg("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom }),
      svg("text", { x: 4, y: PAD.top + 8 }, y1.toPrecision(3)),
      svg("text", { x: 4, y: H - PAD.bottom }, y0.toPrecision(3)),
      svg("text", { x: W - PAD.right - 60, y: H - 6 }, `epoch ${x1}`),
    );
    points.forEach((series, i) => {
      if (!series.length) return;
      const d = series.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
      el.append(svg("polyline", { points: d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2, "data-series": keys[i], "data-points": series.length }));
      for (const [x, y] of series) el.append(svg("circle", { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 2.5, fill: COLORS[i % COLORS.length] }));
    });
    el.setAttribute("aria-label", `${title}: ${history.length} epochs`);
  }
  const legend = document.createElement("p");
  legend.className = "legend";
  keys.forEach((key, i) => {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLORS[i % COLORS.length];
    item.append(swatch, key);
    legend.append(item);
  });
  const figure = document.createElement("figure");
  figure.style.margin = "0";
  figure.append(el, legend);
  update([]);
  return { el: figure, update };
}
