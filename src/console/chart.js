// Small SVG charts: lines over time (jobs by status, throughput) and bars (durations).
const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f6feb", "#b35900", "#1a7f37", "#cf222e", "#8250df", "#57606a"];

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A line chart of `series` ({name, points: [[t, v]…]}); `title` labels it for screen readers. */
export function lineChart(title, series, { width = 560, height = 180 } = {}) {
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart" });
  svg.append(el("title", {}, title));
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    svg.append(el("text", { x: 10, y: height / 2 }, "collecting samples…"));
    return svg;
  }
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const vmax = Math.max(1, ...all.map((p) => p[1]));
  const pad = { l: 44, r: 110, t: 10, b: 20 };
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / vmax) * (height - pad.t - pad.b);
  svg.append(el("line", { x1: pad.l, y1: y(0), x2: width - pad.r, y2: y(0), class: "axis" }));
  svg.append(el("text", { x: 4, y: y(vmax) + 4, class: "tick" }, String(Math.round(vmax))));
  svg.append(el("text", { x: 4, y: y(0), class: "tick" }, "0"));
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    svg.append(el("path", { d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2 }));
    const lastV = s.points[s.points.length - 1][1];
    svg.append(el("text", { x: width - pad.r + 6, y: 14 + i * 16, fill: COLORS[i % COLORS.length], class: "legend" }, `${s.name} ${Math.round(lastV * 10) / 10}`));
  });
  return svg;
}

/** A horizontal bar chart of `rows` ([label, value, note]). */
export function barChart(title, rows, { width = 560, unit = "" } = {}) {
  const h = 22;
  const height = Math.max(1, rows.length) * h + 10;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart" });
  svg.append(el("title", {}, title));
  if (rows.length === 0) {
    svg.append(el("text", { x: 10, y: 16 }, "no data yet"));
    return svg;
  }
  const vmax = Math.max(...rows.map((r) => r[1]), 1e-9);
  rows.forEach(([label, v, note], i) => {
    const w = (v / vmax) * (width - 300);
    svg.append(el("text", { x: 4, y: i * h + 16, class: "tick" }, label));
    svg.append(el("rect", { x: 190, y: i * h + 4, width: Math.max(1, w), height: h - 8, fill: COLORS[i % COLORS.length] }));
    svg.append(el("text", { x: 196 + w, y: i * h + 16, class: "tick" }, `${v.toFixed(3)}${unit}${note ? ` ${note}` : ""}`));
  });
  return svg;
}
