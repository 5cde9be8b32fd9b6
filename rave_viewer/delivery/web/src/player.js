// The published player: reads a .rave stream by HTTP range requests and renders each complete prefix with Spark.
//
// Start target from the page URL: ?rate=BYTES | ?count=N | ?psnr=DB | ?auto=SECONDS | ?full (default: the
// manifest's start point, else everything). The slider raises or lowers the target: raising fetches only the
// missing chunks, lowering never refetches. A server that ignores Range (200) is read only as far as needed.
// window.rave exposes the state for tests: {state, fetched, chunks, gaussians, target, requests, error}.
import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
import { SparkRenderer, SplatMesh, PackedSplats } from "@sparkjsdev/spark";
import { parseHeader, headerExtent, crc32, decodeChunk } from "./decode.js";

window.raveDecoder = { parseHeader, decodeChunk, crc32 }; // the chunk decoder, for tests and other pages
const cfg = JSON.parse(document.getElementById("rave-config").textContent);
const params = new URLSearchParams(location.search);
const ui = {
  status: document.getElementById("status"),
  slider: document.getElementById("target"),
  label: document.getElementById("target-label"),
};
const state = (window.rave = { state: "opening", fetched: 0, chunks: 0, gaussians: 0, target: 0, requests: 0,
  wasted: 0, error: null, message: null, frames: 0, shown: 0,
  sums: { means: 0, scales: 0, opacity: 0, rgb: 0, quats: 0 } }); // sums over decoded chunks: checked by the tests

const fmtBytes = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(3)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} KB` : `${n} B`);

let buf = new Uint8Array(1 << 16), size = 0; // contiguous bytes [0, size) of the stream (capacity doubles)
let data = buf.subarray(0, 0);
let header = null, manifest = null, ends = [], counts = [];
let decoded = []; // per complete chunk: decodeChunk() result
let wantChunks = 1, autoBudget = null, t0 = performance.now();
let tpBytes = 0, tpSeconds = 0; // throughput estimate over all requests
let loop = null;

function append(bytes) {
  if (size + bytes.length > buf.length) {
    let cap = buf.length;
    while (cap < size + bytes.length) cap *= 2;
    if (header) cap = Math.max(Math.min(cap, header.size), size + bytes.length);
    const out = new Uint8Array(cap);
    out.set(buf.subarray(0, size), 0);
    buf = out;
  }
  buf.set(bytes, size);
  size += bytes.length;
  data = buf.subarray(0, size);
  state.fetched = size;
}

function truncate(n) {
  size = Math.min(size, n);
  data = buf.subarray(0, size);
  state.fetched = size;
}

async function fetchRange(url, start, end, onBytes, shouldStop) {
  // read [start, end) into onBytes as it arrives; a 200 answer is skipped to start and cut at end
  state.requests++;
  const t = performance.now();
  const ctl = new AbortController(); // abort() drops the connection: a 200 body is never read past `end`
  const resp = await fetch(url, { headers: { Range: `bytes=${start}-${end - 1}` }, cache: "no-store", signal: ctl.signal });
  if (resp.status === 416) throw new Error(`HTTP 416: bytes ${start}-${end - 1} are past the end of the stream`);
  if (resp.status !== 206 && resp.status !== 200) throw new Error(`HTTP ${resp.status} for ${url}`);
  let skip = resp.status === 200 ? start : 0, want = end - start, got = 0;
  if (resp.status === 200) state.message = "the server ignores Range: reading from the start";
  const reader = resp.body.getReader();
  try {
    while (got < want) {
      if (shouldStop && shouldStop()) break;
      const { value, done } = await reader.read();
      if (done) throw new Error(`connection closed after ${got} of ${want} bytes`);
      let v = value;
      if (skip > 0) {
        const s = Math.min(skip, v.length);
        skip -= s;
        state.wasted += s;
        v = v.subarray(s);
      }
      if (v.length > want - got) v = v.subarray(0, want - got);
      if (v.length) { got += v.length; onBytes(v); }
    }
  } finally {
    if (got < want || resp.status === 200) ctl.abort();
    reader.cancel().catch(() => {});
  }
  tpBytes += got;
  tpSeconds += (performance.now() - t) / 1000;
  return got;
}

function completeChunks() {
  // decode every chunk whose bytes are all here (CRC checked); returns true if any was added
  let grown = false;
  while (decoded.length < header.chunks.length && header.chunks[decoded.length].end <= data.length) {
    const c = header.chunks[decoded.length];
    const bytes = data.subarray(c.offset, c.end);
    if (crc32(bytes) !== c.crc) {
      truncate(c.offset); // drop it: refetched once by the loop
      throw Object.assign(new Error(`chunk ${decoded.length} is corrupt (CRC mismatch)`), { corrupt: decoded.length });
    }
    const d = decodeChunk(header, bytes, c.count);
    decoded.push(d);
    const sum = (a) => a.reduce((x, y) => x + y, 0);
    state.sums.means += sum(d.means); state.sums.scales += sum(d.scales); state.sums.opacity += sum(d.opacity);
    state.sums.rgb += sum(d.rgb); state.sums.quats += sum(d.quats.map(Math.abs));
    grown = true;
  }
  state.chunks = decoded.length;
  state.gaussians = decoded.length ? counts[decoded.length - 1] : 0;
  return grown;
}

function chunksFor(mode, value) {
  const m = ends.length;
  const upto = (arr, v) => { let j = 0; while (j < m && arr[j] <= v) j++; return Math.min(Math.max(j, 1), m); };
  if (mode === "rate") return upto(ends, value);
  if (mode === "count") return upto(counts, value);
  if (mode === "psnr" && manifest && manifest.rd) {
    let best = -Infinity;
    for (let i = 0; i < manifest.rd.count.length; i++) {
      best = Math.max(best, manifest.rd.psnr[i]);
      if (best >= value) return Math.min(Math.max(counts.findIndex((c) => c >= manifest.rd.count[i]) + 1, 1), m);
    }
  }
  return m;
}

function autoChunks() {
  // the largest prefix whose missing bytes arrive within the time left (85 % of the measured throughput)
  const left = autoBudget - (performance.now() - t0) / 1000;
  const tp = tpSeconds > 0 ? tpBytes / tpSeconds : null;
  const have = Math.max(decoded.length, 1);
  if (!tp || left <= 0) return Math.min(have, ends.length);
  const budget = (decoded.length ? ends[decoded.length - 1] : header.indexEnd) + 0.85 * tp * left;
  return Math.min(Math.max(chunksFor("rate", budget), have), ends.length);
}

// -- rendering --------------------------------------------------------------------------------------------
const renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true });
renderer.setPixelRatio(1);
renderer.setClearColor(0x000000, 1);
document.getElementById("view").appendChild(renderer.domElement);
const scene = new THREE.Scene();
const camera = new THREE.PerspectiveCamera(50, 1, 0.01, 1000);
const spark = new SparkRenderer({ renderer });
scene.add(spark);
const controls = new OrbitControls(camera, renderer.domElement);
let mesh = null, shownChunks = 0;

function resize() {
  const w = window.innerWidth, h = window.innerHeight;
  renderer.setSize(w, h, false);
  renderer.domElement.style.width = w + "px";
  renderer.domElement.style.height = h + "px";
  camera.aspect = w / Math.max(h, 1);
  camera.updateProjectionMatrix();
}
window.addEventListener("resize", resize);

function placeCamera() {
  const b = header.bounds;
  const centre = new THREE.Vector3((b[0] + b[3]) / 2, (b[1] + b[4]) / 2, (b[2] + b[5]) / 2);
  const tv = manifest && manifest.test_views;
  if (tv && tv.c2w && tv.c2w.length) {
    const m = tv.c2w[0]; // row-major 4x4, OpenCV axes (x right, y down, z forward)
    const pos = new THREE.Vector3(m[3], m[7], m[11]);
    const fwd = new THREE.Vector3(m[2], m[6], m[10]);
    const up = new THREE.Vector3(-m[1], -m[5], -m[9]);
    camera.position.copy(pos);
    camera.up.copy(up);
    camera.fov = (tv.fov_y[0] * 180) / Math.PI;
    const dist = Math.max(centre.clone().sub(pos).dot(fwd), 0.1);
    controls.target.copy(pos.clone().add(fwd.multiplyScalar(dist)));
  } else {
    const r = Math.hypot(b[3] - b[0], b[4] - b[1], b[5] - b[2]) / 2 || 1;
    camera.position.copy(centre.clone().add(new THREE.Vector3(0, -2.0 * r, 0.8 * r)));
    camera.up.set(0, 0, 1);
    controls.target.copy(centre);
  }
  camera.updateProjectionMatrix();
  controls.update();
}

let lastBuild = 0;
function showPrefix() {
  // rebuild the splat mesh from the decoded chunks: at most every 0.3 s while chunks arrive, at once at the end
  if (decoded.length === shownChunks || !decoded.length) return;
  const now = performance.now();
  if (now - lastBuild < 300 && decoded.length < wantChunks) return;
  lastBuild = now;
  const n = counts[decoded.length - 1];
  const ps = new PackedSplats({ maxSplats: n });
  const c = new THREE.Vector3(), s = new THREE.Vector3(), q = new THREE.Quaternion(), col = new THREE.Color();
  for (const d of decoded) {
    for (let i = 0; i < d.count; i++) {
      c.set(d.means[3 * i], d.means[3 * i + 1], d.means[3 * i + 2]);
      s.set(d.scales[3 * i], d.scales[3 * i + 1], d.scales[3 * i + 2]);
      q.set(d.quats[4 * i + 1], d.quats[4 * i + 2], d.quats[4 * i + 3], d.quats[4 * i]); // (x, y, z, w)
      col.r = d.rgb[3 * i]; col.g = d.rgb[3 * i + 1]; col.b = d.rgb[3 * i + 2]; // as stored: no colour-space conversion
      ps.pushSplat(c, s, q, d.opacity[i], col);
    }
  }
  const next = new SplatMesh({ packedSplats: ps });
  scene.add(next);
  if (mesh) { scene.remove(mesh); mesh.dispose(); }
  mesh = next;
  shownChunks = decoded.length;
  state.shown = n;
}

function writeStatus() {
  const tp = tpSeconds > 0 ? tpBytes / tpSeconds : null;
  const lv = manifest && manifest.levels ? manifest.levels.filter((l) => l.chunks <= decoded.length).length : null;
  const parts = [
    `${fmtBytes(state.fetched)} of ${fmtBytes(header ? header.size : 0)}`,
    `${state.gaussians.toLocaleString()} of ${(header ? header.n : 0).toLocaleString()} Gaussians`,
    lv !== null ? `level ${lv} of ${manifest.levels.length}` : null,
    tp ? `${((8 * tp) / 1e6).toFixed(2)} Mbit/s` : null,
    state.state,
  ].filter(Boolean);
  ui.status.textContent = parts.join(" · ") + (state.error ? ` — ${state.error}` : state.message ? ` — ${state.message}` : "");
  if (ui.label && ends.length) ui.label.textContent = `target: ${fmtBytes(ends[wantChunks - 1])} (${counts[wantChunks - 1].toLocaleString()} Gaussians)`;
}

// -- the fetch loop ---------------------------------------------------------------------------------------
const streamUrl = new URL(cfg.stream, location.href).href;

async function open() {
  try {
    const r = await fetch(new URL(cfg.manifest, location.href).href, { cache: "no-store" });
    if (r.ok) manifest = await r.json();
  } catch (e) { manifest = null; }
  const want = manifest && manifest.header_bytes ? manifest.header_bytes : 4096;
  await fetchRange(streamUrl, 0, want, append);
  const need = headerExtent(data);
  if (need && need > data.length) await fetchRange(streamUrl, data.length, need, append);
  header = parseHeader(data);
  ends = header.chunks.map((c) => c.end);
  let t = 0;
  counts = header.chunks.map((c) => (t += c.count));
  // start target
  if (params.has("auto")) { autoBudget = Math.max(parseFloat(params.get("auto")) || 5, 0.1); }
  else if (params.has("rate")) wantChunks = chunksFor("rate", parseFloat(params.get("rate")));
  else if (params.has("count")) wantChunks = chunksFor("count", parseFloat(params.get("count")));
  else if (params.has("psnr")) wantChunks = chunksFor("psnr", parseFloat(params.get("psnr")));
  else if (params.has("full")) wantChunks = ends.length;
  else wantChunks = manifest && manifest.start ? chunksFor("count", manifest.start.count) : ends.length;
  if (ui.slider) {
    ui.slider.max = String(ends.length);
    ui.slider.value = String(wantChunks);
    ui.slider.addEventListener("input", () => {
      autoBudget = null;
      wantChunks = parseInt(ui.slider.value, 10);
      state.target = wantChunks;
      kick();
    });
  }
  placeCamera();
  completeChunks();
}

let running = false, retried = new Set(), failures = 0;
async function pump() {
  if (running) return;
  running = true;
  try {
    while (true) {
      if (autoBudget !== null) wantChunks = autoChunks();
      state.target = wantChunks;
      if (ui.slider && autoBudget !== null) ui.slider.value = String(wantChunks);
      if (decoded.length >= wantChunks) break;
      const start = data.length;
      const tp = tpSeconds > 0 ? tpBytes / tpSeconds : 0;
      let end = ends[wantChunks - 1];
      if (autoBudget !== null) end = Math.min(end, Math.max(ends[decoded.length], start + tp * 1.0)); // re-plan each ~1 s
      let j = ends.findIndex((e) => e >= end);
      end = ends[j < 0 ? ends.length - 1 : j];
      state.state = "fetching";
      try {
        await fetchRange(streamUrl, start, end, (v) => { append(v); completeChunks(); },
          () => autoBudget === null && decoded.length >= wantChunks);
        failures = 0;
        state.error = null;
      } catch (e) {
        if (e.corrupt !== undefined && !retried.has(e.corrupt)) { retried.add(e.corrupt); state.message = e.message + ": fetching it again"; continue; }
        if (e.corrupt !== undefined) { state.error = e.message + " again; stopped"; state.state = "failed"; return; }
        failures++;
        if (failures > 6) { state.error = `${e.message}; stopped`; state.state = "failed"; return; }
        const delay = Math.min(500 * 2 ** (failures - 1), 16000);
        state.error = `${e.message}; retrying in ${delay / 1000} s`;
        state.state = "retrying";
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    state.state = decoded.length === ends.length ? "done" : "idle";
  } finally {
    running = false;
  }
}
function kick() { pump().catch((e) => { state.error = String(e.message || e); state.state = "failed"; }); }

// render on demand: after a camera move, a resize or new splats, for a few frames (Spark sorts in a worker)
let redraw = 60, ticks = 0;
const wake = () => { redraw = 60; };
controls.addEventListener("change", wake);
window.addEventListener("resize", wake);
resize();
renderer.setAnimationLoop(() => {
  if (header && decoded.length !== shownChunks) { showPrefix(); if (decoded.length === shownChunks) wake(); }
  if (++ticks % 10 === 0 && header) writeStatus();
  if (redraw <= 0) return;
  redraw--;
  controls.update();
  renderer.render(scene, camera);
  state.frames++;
});
open().then(kick).catch((e) => { state.error = String(e.message || e); state.state = "failed"; ui.status.textContent = state.error; });
