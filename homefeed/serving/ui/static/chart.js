// Bar charts with confidence-interval whiskers, drawn as inline SVG (no library, no network).
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// bars: [{label, value, lo, hi, highlight}] -> <svg>. The value axis starts at 0 (or the lowest
// whisker if below 0) so bar lengths compare honestly.
export function barChart(bars, { title = "", width = 320, height = 180 } = {}) {
  const pad = { top: title ? 22 : 8, right: 8, bottom: 22, left: 44 };
  const finite = (x) => typeof x === "number" && Number.isFinite(x);
  const values = bars.flatMap((b) => [b.value, b.lo, b.hi]).filter(finite);
  const top = Math.max(0, ...values) || 1;
  const bottom = Math.min(0, ...values);
  const plotH = height - pad.top - pad.bottom;
  const y = (v) => pad.top + plotH * (1 - (v - bottom) / (top - bottom));
  const slot = (width - pad.left - pad.right) / Math.max(bars.length, 1);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img" });
  if (title) root.append(svg("text", { x: pad.left, y: 14, class: "chart-title" }, title));
  for (const tick of [bottom, (top + bottom) / 2, top]) {
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(tick), y2: y(tick), class: "grid-line" }));
    root.append(svg("text", { x: pad.left - 4, y: y(tick) + 4, "text-anchor": "end", class: "tick" }, tick.toPrecision(2)));
  }
  bars.forEach((b, i) => drawBar(root, b, pad.left + i * slot, slot, y, height - pad.bottom));
  return root;
}

function drawBar(root, b, x0, slot, y, axisY) {
  const w = slot * 0.55;
  const x = x0 + (slot - w) / 2;
  const zero = y(0);
  if (Number.isFinite(b.value)) {
    const top = Math.min(y(b.value), zero);
    const bar = svg("rect", { x, y: top, width: w, height: Math.abs(zero - y(b.value)), class: b.highlight ? "bar control" : "bar" });
    bar.append(svg("title", {}, `${b.label}: ${b.value.toPrecision(4)} [${b.lo?.toPrecision(4)}, ${b.hi?.toPrecision(4)}]`));
    root.append(bar);
  }
  if (Number.isFinite(b.lo) && Number.isFinite(b.hi)) {
    const cx = x + w / 2;
    root.append(svg("line", { x1: cx, x2: cx, y1: y(b.lo), y2: y(b.hi), class: "whisker" }));
    for (const v of [b.lo, b.hi]) {
      root.append(svg("line", { x1: cx - w / 4, x2: cx + w / 4, y1: y(v), y2: y(v), class: "whisker" }));
    }
  }
  root.append(svg("text", { x: x + w / 2, y: axisY + 15, "text-anchor": "middle", class: "tick" }, b.label));
}
