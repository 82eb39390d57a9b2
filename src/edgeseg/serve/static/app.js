// The live view: every camera of the run is a tile of the grid, an <img> on /stream.mjpg?camera=NAME with its
// name, state, frames/s and drops; /health (polled) lists the cameras, so tiles appear as cameras join. The side
// panel shows the selected camera (click a tile; the first by default): /events brings each frame's detections
// (the --save-jsonl line, with "camera" when the run names its cameras; with --track, ids, events and running
// counts). The page's own token (?token=) goes along.
"use strict";

const PALETTE = ["FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
  "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7"]; // as edgeseg.draw
const MAX_ROWS = 50;
const token = new URLSearchParams(location.search).get("token");
const withToken = (path, query = {}) => {
  const params = new URLSearchParams(query);
  if (token) params.set("token", token);
  const text = params.toString();
  return text ? `${path}?${text}` : path;
};
const $ = (id) => document.getElementById(id);
let pending = null; // the newest message not drawn yet: the page draws at most once per animation frame
let ended = false;
let selected = null; // the key ("camera" in /health) of the camera the side panel shows
const tiles = new Map(); // camera key -> its tile
// A browser keeps at most 6 HTTP/1.1 connections to a server: the first cameras get a stream each, the events
// and the health check keep one free, and the tiles past them show /frame.jpg, fetched again each second.
const MAX_STREAMS = 4;
let refresh = 0;

function setState(text, ok) {
  $("state").textContent = text;
  $("state").classList.toggle("off", !ok);
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function swatch(classId) {
  const s = document.createElement("span");
  s.className = "swatch";
  s.style.background = `#${PALETTE[classId % PALETTE.length]}`;
  return s;
}

function render() {
  const msg = pending;
  pending = null;
  if (!msg) return;
  const dets = msg.detections;
  $("frame").textContent = msg.time_s === null ? `${msg.frame}` : `${msg.frame} (${msg.time_s.toFixed(2)} s)`;
  const counts = new Map();
  for (const d of dets) {
    const c = counts.get(d.class_name) || { id: d.class_id, n: 0 };
    c.n += 1;
    counts.set(d.class_name, c);
  }
  const countBody = $("counts").tBodies[0];
  countBody.replaceChildren();
  for (const [name, c] of [...counts].sort((a, b) => b[1].n - a[1].n)) {
    const row = countBody.insertRow();
    cell(row, name).prepend(swatch(c.id));
    cell(row, `${c.n}`, "num");
  }
  if (!counts.size) cell(countBody.insertRow(), "nothing detected").className = "muted";
  renderTally(msg.counts);
  const body = $("detections").tBodies[0];
  body.replaceChildren();
  for (const d of dets.slice(0, MAX_ROWS)) {
    const row = body.insertRow();
    const label = d.track_id === undefined ? d.class_name : `#${d.track_id} ${d.class_name}`;
    cell(row, label).prepend(swatch(d.track_id === undefined ? d.class_id : d.track_id));
    cell(row, d.score.toFixed(2), "num");
    cell(row, d.bbox_xyxy.map((v) => Math.round(v)).join(", "));
  }
  if (dets.length > MAX_ROWS) cell(body.insertRow(), `… ${dets.length - MAX_ROWS} more`).className = "muted";
}

function renderTally(tally) {
  // --line / --zone counts of a tracked run (absent otherwise)
  const shown = Boolean(tally && (Object.keys(tally.lines).length || Object.keys(tally.zones).length));
  $("tally").hidden = !shown;
  $("tally-title").hidden = !shown;
  if (!shown) return;
  const body = $("tally").tBodies[0];
  body.replaceChildren();
  for (const [name, c] of Object.entries(tally.lines)) {
    const row = body.insertRow();
    cell(row, `line ${name}`);
    cell(row, `in ${c.in} · out ${c.out}`, "num");
  }
  for (const [name, c] of Object.entries(tally.zones)) {
    const row = body.insertRow();
    cell(row, `zone ${name}`);
    cell(row, `${c.occupancy} inside · ${c.entered} entered · ${c.exited} left`, "num");
  }
}

const events = new EventSource(withToken("events"));
events.onopen = () => setState("live", true);
events.onmessage = (e) => {
  const msg = JSON.parse(e.data);
  if ((msg.camera || "") !== selected) return;
  if (!pending) requestAnimationFrame(render);
  pending = msg;
};
events.addEventListener("end", () => {
  ended = true;
  events.close();
  setState("stream ended", false);
});
events.onerror = () => {
  if (!ended) setState("reconnecting…", false);
};

function select(key) {
  selected = key;
  for (const [k, tile] of tiles) tile.classList.toggle("selected", k === key);
  pending = null;
  $("detections").tBodies[0].replaceChildren();
  $("counts").tBodies[0].replaceChildren();
  $("frame").textContent = "–";
}

function tileOf(camera) {
  let tile = tiles.get(camera.camera);
  if (tile) return tile;
  tile = $("tile-template").content.firstElementChild.cloneNode(true);
  tile.dataset.still = tiles.size >= MAX_STREAMS ? "1" : "";
  if (!tile.dataset.still) tile.querySelector("img").src = withToken("stream.mjpg", { camera: camera.camera });
  tile.addEventListener("click", () => select(camera.camera));
  tiles.set(camera.camera, tile);
  $("grid").append(tile);
  $("waiting").hidden = true;
  $("grid").classList.toggle("single", tiles.size === 1);
  if (selected === null) select(camera.camera);
  return tile;
}

const rate = (fps) => (fps === null ? "–" : fps.toFixed(1));

function showCameras(cameras) {
  refresh += 1;
  for (const c of cameras) {
    const tile = tileOf(c);
    tile.querySelector(".name").textContent = c.name;
    tile.querySelector(".name").title = c.source;
    const badge = tile.querySelector(".badge");
    badge.textContent = c.state;
    badge.className = `badge ${c.state}`;
    badge.title = c.state_detail;
    tile.querySelector(".fps").textContent = `${rate(c.fps)} frames/s`;
    tile.querySelector(".drops").textContent = `${c.dropped} dropped`;
    if (tile.dataset.still && c.frames) tile.querySelector("img").src = withToken("frame.jpg", { camera: c.camera, n: refresh });
    if (c.camera === selected) {
      $("selected").textContent = c.name;
      $("fps").textContent = rate(c.fps);
      $("latency").textContent = c.latency_ms === null ? "–" : `${c.latency_ms.toFixed(1)} ms`;
      $("dropped").textContent = `${c.dropped}`;
    }
  }
}

async function poll() {
  try {
    const r = await fetch(withToken("health"), { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const h = await r.json();
    showCameras(h.cameras);
    const n = h.cameras.length;
    $("source").textContent = n > 1 ? `${n} cameras · ${rate(h.fps)} frames/s · ${h.dropped} dropped` : h.source || "";
    if (h.status === "ended") setState("stream ended", false);
  } catch (err) {
    if (!ended) setState(`server unreachable (${err.message})`, false);
  }
}

poll();
setInterval(poll, 1000);
