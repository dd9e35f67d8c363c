"""The page of `nwt serve` (nwt/serve.py): one self-contained HTML document, its CSS and script
inline — no fonts, scripts or images from the network. It is a Python string so that it installs
with the package like any module (no package-data configuration to forget).

The page reads /api/info, sends the chosen or recorded audio (MediaRecorder) as the body of
POST /api/jobs, follows the job by long polls of /api/jobs/<id>?since=<version> (queue position,
frames done / total), then plays /api/jobs/<id>/video and offers it for download. The test hooks
are plain DOM: body[data-ready], #message (the server's or the page's message), #status[data-state],
#video."""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nwt — speech to presenter video</title>
<style>
:root { --bg: #f7f7f5; --fg: #1d1d1f; --muted: #66666b; --card: #fff; --line: #d9d9de; --accent: #2456c7;
        --err-bg: #fdecea; --err-fg: #8a1c12; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #161618; --fg: #ececf0; --muted: #9d9da6; --card: #202024; --line: #3a3a42; --accent: #7aa2ff;
          --err-bg: #3b1d1a; --err-fg: #ffb4a9; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); line-height: 1.45;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
header, main, footer { max-width: 860px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 20px; }
h1 { margin: 0; font-size: 24px; }
h2 { margin: 0 0 10px; font-size: 16px; }
.muted { color: var(--muted); font-size: 13px; }
section, .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px;
                 margin: 14px 0; }
.row { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; }
button, select, input { font: inherit; color: inherit; }
button { border: 1px solid var(--line); background: var(--card); border-radius: 8px; padding: 7px 14px;
         cursor: pointer; }
button:disabled, input:disabled { opacity: .5; cursor: default; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; font-weight: 600; }
input[type=number], select { width: 100%; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px;
                             background: var(--bg); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; }
.grid label { display: flex; flex-direction: column; gap: 4px; font-size: 13px; }
.episodes { display: flex; flex-wrap: wrap; gap: 10px; }
.episode { display: flex; flex-direction: column; align-items: center; gap: 4px; padding: 6px; width: 118px;
           border: 2px solid var(--line); border-radius: 8px; cursor: pointer; font-size: 12px; text-align: center;
           word-break: break-all; }
.episode:has(input:checked) { border-color: var(--accent); }
.episode input { position: absolute; opacity: 0; pointer-events: none; }
.episode img, .episode .blank { width: 100px; height: 114px; object-fit: cover; border-radius: 4px;
                                background: var(--line); display: flex; align-items: center; justify-content: center;
                                font-size: 28px; color: var(--muted); }
#message { background: var(--err-bg); color: var(--err-fg); border-radius: 8px; padding: 10px 14px; margin: 14px 0; }
progress { width: 100%; height: 14px; }
video { width: 100%; max-width: 448px; background: #000; border-radius: 8px; display: block; }
audio { width: 100%; margin-top: 8px; }
footer { padding-bottom: 28px; }
.actions { display: flex; gap: 10px; margin: 14px 0; }
</style>
</head>
<body>
<header>
  <h1>nwt</h1>
  <div>Speech in, talking-presenter video out — generated on this machine.</div>
  <div id="model" class="muted">Loading the model…</div>
</header>
<main>
<form id="form">
  <section>
    <h2>1. Speech</h2>
    <div class="row">
      <input id="file" type="file" accept="audio/*,video/*,.wav,.flac,.mp3,.m4a,.ogg,.opus,.webm">
      <span class="muted">or</span>
      <button type="button" id="record">● Record</button>
      <span id="rec-time" class="muted"></span>
    </div>
    <div id="source" class="muted">No speech chosen yet.</div>
    <audio id="preview" controls hidden></audio>
    <div id="limits" class="muted"></div>
  </section>
  <section>
    <h2>2. Look</h2>
    <div id="episodes" class="episodes" role="radiogroup" aria-label="episode"></div>
    <div class="muted">An episode's look (outfit, hair, set) as it was trained; the first choice is the look
      learned for episodes never seen in training.</div>
  </section>
  <section>
    <h2>3. Options</h2>
    <div class="grid">
      <label>Style seed <input id="style_seed" type="number" min="0" step="1" placeholder="mean style"></label>
      <label>Guidance <input id="guidance" type="number" min="0" max="20" step="0.5"></label>
      <label>Seed <input id="seed" type="number" min="0" step="1" value="0"></label>
      <label>Format <select id="format">
        <option value="mp4">mp4 (H.264 + AAC)</option><option value="webm">webm (VP9 + Opus)</option>
      </select></label>
    </div>
    <div id="options-help" class="muted">Style seed: the unlabelled style (framing, zoom) drawn with this seed;
      empty: the mean style. Guidance: how closely the mouth follows the speech (1 = off). Seed: the same seed
      and options give the same video.</div>
  </section>
  <div class="actions">
    <button id="go" class="primary" type="submit" disabled>Generate video</button>
    <button id="cancel" type="button" hidden>Cancel</button>
  </div>
</form>
<div id="message" role="alert" hidden></div>
<section id="status" data-state="idle" hidden aria-live="polite">
  <div id="status-text"></div>
  <progress id="progress" max="1" value="0"></progress>
  <div id="queue" class="muted"></div>
</section>
<section id="result" hidden>
  <h2>Result</h2>
  <video id="video" controls preload="auto" playsinline></video>
  <p><a id="download" href="#" download>Download the video</a> <span id="result-info" class="muted"></span></p>
</section>
</main>
<footer class="muted">Everything runs on this machine: the audio and the video go nowhere else. Every video
  carries a visible SYNTHETIC mark and provenance in its metadata. Use speech and looks you have the right to use,
  and never to deceive.</footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const FINAL = ["done", "failed", "cancelled"];
let info = null, source = null, sourceName = "", recorder = null, job = null;

function showMessage(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  let body;
  try { body = await response.json(); } catch (e) { body = {}; }
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function tooBig(size) {
  if (size <= info.max_upload_mb * 1e6) return "";
  return `the file is ${(size / 1e6).toFixed(1)} MB: this server takes uploads of at most ` +
         `${info.max_upload_mb} MB (nwt serve --max-upload-mb)`;
}

function update() {
  const busy = job !== null && !FINAL.includes(job.state);
  $("go").disabled = !info || !source || busy || recorder !== null;
  $("cancel").hidden = !busy;
  $("file").disabled = busy;
  $("record").disabled = busy || !(navigator.mediaDevices && window.MediaRecorder);
}

function setSource(blob, name) {
  source = blob;
  sourceName = name;
  $("source").textContent = `${name} — ${(blob.size / 1e6).toFixed(2)} MB`;
  $("preview").src = URL.createObjectURL(blob);
  $("preview").hidden = false;
  showMessage(tooBig(blob.size));
  update();
}

function episodeChoice(value, label, image, checked) {
  const item = document.createElement("label");
  item.className = "episode";
  const input = document.createElement("input");
  Object.assign(input, {type: "radio", name: "episode", value: value, checked: checked});
  const picture = document.createElement(image ? "img" : "div");
  if (image) Object.assign(picture, {src: image, alt: label});
  else { picture.className = "blank"; picture.textContent = "?"; }
  item.append(input, picture, label);
  return item;
}

async function init() {
  try { info = await getJSON("/api/info"); } catch (e) {
    showMessage("Cannot reach the nwt server: " + e.message);
    return;
  }
  $("model").textContent = "Model: " + info.model;
  $("limits").textContent = `At most ${info.max_upload_mb} MB and ${info.max_seconds} s of speech (at least ` +
    `${info.min_seconds} s): wav, flac, mp3, m4a, ogg, webm, or a video with sound.`;
  const list = $("episodes");
  list.append(episodeChoice("", "unseen look", null, true));
  for (const e of info.episodes) {
    list.append(episodeChoice(e.id, e.unseen ? `${e.id} (held out)` : e.id, e.reference, false));
  }
  $("guidance").value = info.guidance_default;
  if (!info.guidance_usable) {
    $("guidance").disabled = true;
    $("guidance").title = "this model was trained without a 'no audio' input: it cannot be guided";
  }
  if (!info.style) {
    $("style_seed").disabled = true;
    $("style_seed").placeholder = "no style latent";
  }
  const h264 = $("video").canPlayType('video/mp4; codecs="avc1.42E01E, mp4a.40.2"');
  $("format").value = h264 ? "mp4" : "webm";
  update();
  document.body.dataset.ready = "1";
}

function render(st) {
  job = st;
  const status = $("status");
  status.hidden = false;
  status.dataset.state = st.state;
  const ahead = st.position === null ? 0 : st.position - 1 + (st.queue.running ? 1 : 0);
  let text = "";
  if (st.state === "queued") {
    text = `Waiting in the queue: position ${st.position}, ${ahead} video${ahead === 1 ? "" : "s"} ahead of yours.`;
  } else if (st.state === "running") {
    text = st.frames_total ? `Generating: ${st.frames_done} / ${st.frames_total} frames ` +
      `(${Math.floor(100 * st.frames_done / st.frames_total)} %)` : "Generating: loading the audio…";
  } else if (st.state === "done") {
    text = `Done: ${st.frames_total} frames, ${st.seconds.toFixed(1)} s of video in ${st.wall_s.toFixed(1)} s.`;
  } else if (st.state === "failed") {
    text = "Failed.";
  } else {
    text = "Cancelled.";
  }
  $("status-text").textContent = text;
  $("progress").max = Math.max(st.frames_total, 1);
  $("progress").value = st.state === "done" ? $("progress").max : st.frames_done;
  $("queue").textContent = `Server: ${st.queue.running ? "generating one video" : "idle"}, ` +
    `${st.queue.waiting} waiting.`;
  update();
}

function finish(st) {
  if (st.state === "done") {
    $("video").src = st.video;
    $("download").href = st.video + "?download=1";
    $("download").download = st.download_name;
    $("result-info").textContent = `${st.download_name}, ${st.format}`;
    $("result").hidden = false;
  } else if (st.state === "failed") {
    showMessage(st.error);
  }
}

async function follow(id, version) {
  let failures = 0;
  while (job && job.id === id && !FINAL.includes(job.state)) {
    let st;
    try { st = await getJSON(`/api/jobs/${id}?since=${version}`); } catch (e) {
      if (++failures > 5) { showMessage("Lost the nwt server: " + e.message); job = null; update(); return; }
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    failures = 0;
    version = st.version;
    render(st);
  }
  if (job && job.id === id) finish(job);
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!source) return;
  showMessage("");
  const big = tooBig(source.size);
  if (big) { showMessage(big); return; }
  const query = new URLSearchParams({seed: $("seed").value || "0", format: $("format").value});
  const episode = document.querySelector("input[name=episode]:checked");
  if (episode && episode.value) query.set("episode", episode.value);
  if ($("style_seed").value && info.style) query.set("style_seed", $("style_seed").value);
  if (info.guidance_usable && $("guidance").value) query.set("guidance", $("guidance").value);
  $("result").hidden = true;
  $("video").removeAttribute("src");
  job = {state: "sending"};
  update();
  $("status").hidden = false;
  $("status").dataset.state = "sending";
  $("status-text").textContent = "Sending the audio…";
  let st;
  try {
    st = await getJSON("/api/jobs?" + query, {method: "POST", body: source,
      headers: {"Content-Type": source.type || "application/octet-stream",
                "X-Filename": encodeURIComponent(sourceName)}});
  } catch (e) {
    job = null;
    $("status").hidden = true;
    $("status").dataset.state = "refused";
    showMessage(e.message);
    update();
    return;
  }
  render(st);
  follow(st.id, st.version);
});

$("cancel").addEventListener("click", async () => {
  if (!job || !job.id) return;
  try { render(await getJSON(`/api/jobs/${job.id}`, {method: "DELETE"})); } catch (e) { showMessage(e.message); }
});

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) setSource(file, file.name);
});

let timer = null;
$("record").addEventListener("click", async () => {
  if (recorder) { recorder.stop(); return; }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({audio: true}); } catch (e) {
    showMessage("Cannot record: " + e.message + " (allow this page to use the microphone)");
    return;
  }
  const chunks = [], start = Date.now();
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    clearInterval(timer);
    const type = recorder.mimeType || "audio/webm";
    recorder = null;
    $("record").textContent = "● Record";
    $("file").value = "";
    setSource(new Blob(chunks, {type: type}), type.includes("mp4") ? "recording.m4a" : "recording.webm");
  };
  recorder.start(250);
  $("record").textContent = "■ Stop";
  update();
  $("record").disabled = false;
  timer = setInterval(() => {
    const seconds = (Date.now() - start) / 1000;
    $("rec-time").textContent = `${seconds.toFixed(1)} s`;
    if (seconds >= info.max_seconds && recorder) recorder.stop();
  }, 100);
});

$("video").addEventListener("error", () => showMessage("The browser cannot play this video: download it, " +
  "or choose the other format."));

init();
</script>
</body>
</html>
"""
