// The live view: the annotated stream is an <img> on /stream.mjpg; /events brings each frame's detections
// (the --save-jsonl line: with --track, ids, events and running counts), /health the frames/s and latency.
// The page's own token (?token=) goes along.
"use strict";

const PALETTE = ["FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
  "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7"]; // as edgeseg.draw
const MAX_ROWS = 50;
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => (token ? `${path}?token=${encodeURIComponent(token)}` : path);
const $ = (id) => document.getElementById(id);
let pending = null; // the newest message not drawn yet: the page draws at most once per animation frame
let ended = false;

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
  if (!pending) requestAnimationFrame(render);
  pending = JSON.parse(e.data);
};
events.addEventListener("end", () => {
  ended = true;
  events.close();
  setState("stream ended", false);
});
events.onerror = () => {
  if (!ended) setState("reconnecting…", false);
};

async function poll() {
  try {
    const r = await fetch(withToken("health"), { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const h = await r.json();
    $("fps").textContent = h.fps === null ? "–" : h.fps.toFixed(1);
    $("latency").textContent = h.latency_ms === null ? "–" : `${h.latency_ms.toFixed(1)} ms`;
    $("dropped").textContent = `${h.dropped}`;
    $("source").textContent = h.source || "";
    if (h.status === "ended") setState("stream ended", false);
  } catch (err) {
    if (!ended) setState(`server unreachable (${err.message})`, false);
  }
}

$("video").src = withToken("stream.mjpg");
poll();
setInterval(poll, 1000);
