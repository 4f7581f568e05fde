// Small helpers shared by the pages: JSON over fetch, DOM building, number formatting.

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${status}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function getJson(url) {
  const response = await fetch(url, { headers: { accept: "application/json" } });
  return decode(response);
}

export async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(body),
  });
  return decode(response);
}

async function decode(response) {
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// el("td", {class: "num"}, "12", child...) -> element; strings become text nodes (never HTML).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function table(headers, rows, attrs = {}) {
  const head = el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h))));
  const body = el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map(cell))));
  return el("table", attrs, head, body);
}

function cell(value) {
  if (value instanceof Node) return el("td", {}, value);
  const numeric = typeof value === "number";
  return el("td", { class: numeric ? "num" : null }, numeric ? fmt(value) : value ?? "—");
}

export function fmt(n, digits = 3) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  if (Number.isInteger(n)) return n.toLocaleString("en-US");
  return Number(n).toPrecision(digits);
}

export function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function nothingYet(what) {
  return el("p", { class: "empty" }, `nothing yet: ${what}`);
}
