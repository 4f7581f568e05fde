// The home feed page: pick a user, page through their feed, and send save/click/hide events.
import { ApiError, el, fmt, getJson, postJson } from "./api.js";

const PAGE = 25;
const $ = (id) => document.getElementById(id);

// One user's session on this page. Hidden pins are remembered so that a refresh or a later
// page never shows them again, even before the backend's online state has seen the hide.
const state = { user: null, cursor: null, shown: new Set(), hidden: new Set(), saved: new Set() };

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function loadSuggestions() {
  const { users } = await getJson("/v1/console/users?limit=8");
  $("suggested").replaceChildren(
    ...users.map((u) =>
      el("button", { type: "button", class: "chip", "data-user": u.user_id, onclick: () => pick(u.user_id) },
        `${u.user_id}`, el("small", {}, ` ${u.engagements} eng.`)),
    ),
  );
}

async function pick(userId) {
  $("user-id").value = userId;
  try {
    state.user = await getJson(`/v1/console/users/${userId}`);
  } catch (e) {
    state.user = null;
    $("grid").replaceChildren();
    $("more").hidden = true;
    setStatus(e instanceof ApiError && e.status === 404 ? `no user ${userId}` : String(e), true);
    return;
  }
  state.hidden = new Set();
  state.saved = new Set();
  describeUser(state.user);
  $("refresh").disabled = false;
  await refresh();
}

function describeUser(u) {
  const topics = u.top_topics.length ? u.top_topics.join(", ") : "none yet";
  const boards = u.boards.length ? `${u.boards.length} boards` : "no boards (cannot save)";
  $("who").textContent =
    `user ${u.user_id}: ${u.engagements} engagements, ${u.saves} saves, ${u.hides} hides, ` +
    `follows ${u.following}; top topics ${topics}; ${boards}` + (u.cold_start ? " — cold start" : "");
}

// A new feed session from page 1.
async function refresh() {
  state.cursor = null;
  state.shown = new Set();
  $("grid").replaceChildren();
  await loadPage();
}

async function loadPage() {
  const userId = state.user.user_id;
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (state.cursor) query.set("cursor", state.cursor);
  $("more").disabled = true;
  try {
    const page = await getJson(`/v1/users/${userId}/feed?${query}`);
    const fresh = page.items.filter((item) => !state.hidden.has(item.pin_id) && !state.shown.has(item.pin_id));
    fresh.forEach((item) => state.shown.add(item.pin_id));
    const cards = fresh.map((item) => pinCard(item));
    $("grid").append(...cards);
    cards.forEach(fitRows);
    state.cursor = page.next_cursor;
    $("more").hidden = !page.next_cursor;
    setStatus(`${state.shown.size} pins · model ${page.model_version}` + (page.next_cursor ? "" : " · end of feed"));
  } catch (e) {
    setStatus(String(e), true);
  } finally {
    $("more").disabled = false;
  }
}

// Pin tiles get a height from their id, so the grid looks like a board of images of
// varied shapes while staying in ranked order left to right.
function pinCard(item) {
  const hue = (item.pin_id * 47) % 360;
  const artHeight = 90 + (item.pin_id % 7) * 22;
  const title = item.topics.length ? item.topics.join(" · ") : "untitled";
  const card = el("article", {
    class: "pin", "data-pin": item.pin_id, "data-position": item.position,
  },
    el("div", { class: "art", style: `--hue:${hue}; height:${artHeight}px` }, el("span", { class: "badge" }, item.source)),
    el("h3", {}, title),
    el("p", { class: "meta" }, `pin ${item.pin_id} · #${item.position + 1} · score ${fmt(item.score)}`),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "save", onclick: () => act(card, item, "save") }, "Save"),
      el("button", { type: "button", class: "click", onclick: () => act(card, item, "click") }, "Click"),
      el("button", { type: "button", class: "hide", onclick: () => act(card, item, "hide") }, "Hide"),
    ),
  );
  if (state.saved.has(item.pin_id)) markSaved(card);
  return card;
}

// The grid has 8 px rows: a pin spans as many as its rendered height needs (plus the gap).
const ROW_PX = 8;
const GAP_PX = 14;
function fitRows(card) {
  card.style.gridRowEnd = "auto";
  const rows = Math.ceil((card.getBoundingClientRect().height + GAP_PX) / ROW_PX);
  card.style.gridRowEnd = `span ${rows}`;
}

function eventFor(kind, item) {
  const event = {
    event_type: kind, user_id: state.user.user_id, pin_id: item.pin_id,
    event_time: new Date().toISOString(), surface: "home_feed", client: { platform: "web" },
  };
  if (kind === "save") event.board_id = state.user.boards[0];
  return event;
}

async function act(card, item, kind) {
  if (kind === "save" && !state.user.boards.length) {
    setStatus(`user ${state.user.user_id} has no board to save to`, true);
    return;
  }
  if (kind === "hide") {  // gone at once; the event follows
    state.hidden.add(item.pin_id);
    card.remove();
  }
  try {
    const result = await postJson("/v1/events", { events: [eventFor(kind, item)] });
    if (result.rejected.length) throw new Error(`${kind} rejected: ${result.rejected[0].message}`);
    if (kind === "save") { state.saved.add(item.pin_id); markSaved(card); }
    if (kind === "click") card.classList.add("clicked");
    setStatus(`${kind} of pin ${item.pin_id} logged`);
  } catch (e) {
    setStatus(String(e), true);
  }
}

function markSaved(card) {
  card.classList.add("saved");
  const button = card.querySelector("button.save");
  button.textContent = "Saved";
  button.disabled = true;
}

$("pick").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("user-id").value.trim();
  if (!/^\d+$/.test(value)) { setStatus(`user id must be a non-negative integer, got "${value}"`, true); return; }
  pick(Number(value));
});
$("refresh").addEventListener("click", () => refresh());
$("more").addEventListener("click", () => loadPage());
let resizing = 0;
window.addEventListener("resize", () => {  // column width changes wrap text: re-measure
  cancelAnimationFrame(resizing);
  resizing = requestAnimationFrame(() => document.querySelectorAll("#grid .pin").forEach(fitRows));
});
loadSuggestions().catch((e) => setStatus(`suggested users: ${e}`, true));
