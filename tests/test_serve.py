"""`nwt serve` (nwt/serve.py) against the real server on a free 127.0.0.1 port with a tiny real
bundle (tests/tiny_checkout.py): HTTP tests (an upload becomes a video as long as the audio, bad
uploads get a clear 4xx message and the server keeps serving, the queue, progress, cancel, the
limits, `nwt serve` as a subprocess removing its files on exit), and the page in headless Chromium
(apt `chromium`, installed by scripts/setup.sh), driven over the DevTools protocol on a pipe:
upload through the file input, the video plays (readyState ≥ 2) with the audio's duration, a bad
upload's message shows, a recording (Chromium's fake microphone) becomes a video, and every request
the page makes goes to the server. Every request goes to 127.0.0.1, each with a timeout, in bounded
loops."""
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import soundfile
import torch
from tiny_checkout import GREY, export_bundle, make_checkout, write_wav

import nwt.generate
import nwt.serve
from nwt.cli import build_parser, main
from nwt.data.media import probe
from nwt.serve import ServedModel, Server

torch.set_num_threads(1)
FPS = 25
MAX_SECONDS, MAX_MB = 4.0, 0.25  # the test server's limits: a 5 s wav is too long, 0.3 MB too big
SPEECH_S = 1.3  # 32 whole frames (1.28 s) of video


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """`nwt export --out` of the tiny checkout: episodes ep0 (grey 40) and ep1 (held out)."""
    checkout = make_checkout(tmp_path_factory.mktemp("checkout"))
    return export_bundle(checkout, tmp_path_factory.mktemp("bundle") / "tiny.pt")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Good and bad uploads."""
    root = tmp_path_factory.mktemp("media")
    files = {"speech": write_wav(root / "speech.wav", SPEECH_S), "long": write_wav(root / "long.wav", 5.0),
             "short": write_wav(root / "short.wav", 0.1), "text": root / "notes.wav", "silent": root / "silent.wav",
             "big": root / "big.wav", "mute_video": root / "mute.mp4"}
    files["text"].write_text("these are notes, not audio\n")
    soundfile.write(files["silent"], np.zeros(16000, np.float32), 16000)
    files["big"].write_bytes(os.urandom(300_000))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(files["mute_video"])], check=True, timeout=60)
    return files


@pytest.fixture(scope="module")
def server(bundle):
    """The real server (nwt.serve.Server, as `nwt serve` runs it) on a free port, in a thread."""
    srv = Server(ServedModel.load(str(bundle)), "127.0.0.1", 0, max_upload_mb=MAX_MB, max_seconds=MAX_SECONDS)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.close()
    thread.join(timeout=10)
    assert not srv.workdir.exists()  # the generated files are gone


def request(srv, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 30) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def api(srv, method: str, path: str, body: bytes | None = None, **kw) -> tuple[int, dict]:
    status, _, data = request(srv, method, path, body, **kw)
    return status, json.loads(data)


def submit(srv, path: Path, query: str = "") -> tuple[int, dict]:
    return api(srv, "POST", f"/api/jobs{query}", path.read_bytes(), headers={"X-Filename": path.name})


def wait_until(srv, job_id: str, done, polls: int = 60) -> dict:
    """Long-poll the job until done(status); at most `polls` requests."""
    version = None
    for _ in range(polls):
        status, st = api(srv, "GET", f"/api/jobs/{job_id}" + ("" if version is None else f"?since={version}"))
        assert status == 200, st
        if done(st):
            return st
        version = st["version"]
    raise AssertionError(f"job {job_id} never got there: {st}")


def finished(st: dict) -> bool:
    return st["state"] in ("done", "failed", "cancelled")


def test_the_page_is_self_contained_and_info_describes_the_model(server, bundle):
    status, headers, page = request(server, "GET", "/")
    html = page.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for widget in ('id="file"', 'id="record"', 'id="episodes"', 'id="style_seed"', 'id="guidance"', 'id="seed"',
                   'id="progress"', 'id="video"', 'id="download"'):
        assert widget in html, widget
    # nothing from the network: no external script, style, font or image, no absolute URL fetched
    assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//|@import|url\(|fetch\(["'`]http""", html)
    status, info = api(server, "GET", "/api/info")
    assert status == 200 and info["model"].startswith(f"bundle {bundle}")
    assert [(e["id"], e["unseen"]) for e in info["episodes"]] == [("ep0", False), ("ep1", True)]
    assert (info["fps"], info["sample_rate"], info["max_seconds"], info["max_upload_mb"]) == (25, 16000, 4, 0.25)
    assert info["style"] and not info["guidance_usable"] and info["guidance_default"] == 1  # tiny prior: no null_audio
    status, headers, png = request(server, "GET", info["episodes"][0]["reference"])
    frame = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and headers["Content-Type"] == "image/png" and frame.shape == (64, 56, 3)
    assert abs(float(frame.mean()) - GREY["ep0"]) < 3


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_an_upload_becomes_a_video_as_long_as_the_audio(server, media, tmp_path, fmt):
    status, st = submit(server, media["speech"], f"?episode=ep0&style_seed=3&seed=7&format={fmt}")
    assert status == 202 and st["state"] in ("queued", "running") and st["seconds"] == pytest.approx(SPEECH_S)
    st = wait_until(server, st["id"], finished)
    assert st["state"] == "done", st
    frames = int(SPEECH_S * FPS)
    assert st["frames_done"] == st["frames_total"] == frames and st["download_name"] == f"speech-nwt.{fmt}"
    status, headers, video = request(server, "GET", st["video"])
    assert status == 200 and headers["Content-Type"] == f"video/{fmt}" and headers["Accept-Ranges"] == "bytes"
    (tmp_path / f"v.{fmt}").write_bytes(video)
    info = probe(tmp_path / f"v.{fmt}")  # ffprobe
    assert info.has_video and info.has_audio and (info.width, info.height) == (64, 64)
    assert abs(info.duration_s - SPEECH_S) <= 1 / FPS, info.duration_s
    status, headers, part = request(server, "GET", st["video"] + "?download=1", headers={"Range": "bytes=10-19"})
    assert status == 206 and part == video[10:20] and headers["Content-Range"] == f"bytes 10-19/{len(video)}"
    assert headers["Content-Disposition"] == f"attachment; filename*=UTF-8''speech-nwt.{fmt}"


BAD = [  # (upload, query, status, message)
    ("text", "", 415, "not audio that ffmpeg can read"),
    ("mute_video", "", 415, "no audio track"),
    ("silent", "", 422, "the audio is silent"),
    ("short", "", 422, "it must be at least 0.2 s"),
    ("long", "", 413, "longer than 4 s, the limit of this server"),
    ("big", "", 413, "the file is 0.3 MB: this server takes uploads of at most 0.25 MB"),
    ("speech", "?episode=nope", 400, "unknown episode 'nope'; this model's episodes: ep0, ep1"),
    ("speech", "?guidance=3", 400, "this model cannot be guided"),
    ("speech", "?seed=x", 400, "the seed must be an integer"),
    ("speech", "?format=avi", 400, "format must be one of mp4, webm"),
]


@pytest.mark.parametrize("name, query, code, message", BAD, ids=[f"{b[0]}{b[1]}" for b in BAD])
def test_a_bad_upload_gets_a_clear_message_and_the_server_keeps_serving(server, media, name, query, code, message):
    status, body = submit(server, media[name], query)
    assert (status, set(body)) == (code, {"error"}) and message in body["error"], body
    assert api(server, "GET", "/api/info")[0] == 200
    assert not list(server.workdir.glob("*.upload"))  # a refused upload is not kept


def test_requests_that_are_not_uploads(server):
    assert api(server, "POST", "/api/jobs", b"")[1]["error"].startswith("the upload is empty")
    assert api(server, "GET", "/api/jobs/0123456789abcdef")[0] == 404
    assert api(server, "GET", "/nothing")[0] == 404
    status, body = api(server, "GET", "/api/info", headers={"Host": "attacker.example:80"})  # DNS rebinding
    assert status == 421 and "its own address" in body["error"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:  # a refused upload's body is read and dropped: the kept-alive connection serves the next request
        conn.request("POST", "/api/jobs?episode=nope", body=b"\0" * 50_000)
        assert conn.getresponse().read() and conn.sock is not None
        conn.request("GET", "/api/info")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:  # as curl sends a large file
        sock.sendall(f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 900000000\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):  # refused before the body: the server closes the connection
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413 ") and b"the file is 900.0 MB" in reply and b"100 Continue" not in reply


@pytest.fixture
def held(monkeypatch):
    """nwt.generate.generate held after each job's first chunk of frames until `release` is set."""
    first_chunk, release = threading.Event(), threading.Event()
    real = nwt.generate.generate

    def generate(*args, on_frames, **kw):
        def on_chunk(n: int) -> None:
            on_frames(n)
            first_chunk.set()
            assert release.wait(30)

        return real(*args, on_frames=on_chunk, **kw)

    monkeypatch.setattr(nwt.generate, "generate", generate)
    yield first_chunk, release
    release.set()


def test_one_at_a_time_a_visible_queue_progress_and_cancel(server, media, held, monkeypatch):
    first_chunk, release = held
    monkeypatch.setattr(nwt.serve, "MAX_WAITING", 2)
    a = submit(server, media["speech"])[1]
    assert first_chunk.wait(30)
    b, c = submit(server, media["speech"])[1], submit(server, media["speech"])[1]
    assert (b["state"], b["position"], c["state"], c["position"]) == ("queued", 1, "queued", 2)
    st = api(server, "GET", f"/api/jobs/{a['id']}")[1]  # progress: the first chunk of 16 frames, of 32
    assert (st["state"], st["position"], st["frames_done"], st["frames_total"]) == ("running", 0, 16, 32)
    assert st["queue"] == {"running": True, "waiting": 2}
    status, full = submit(server, media["speech"])
    assert status == 503 and "the queue is full (2 waiting)" in full["error"]
    st = api(server, "DELETE", f"/api/jobs/{c['id']}")[1]  # a waiting job leaves the queue
    assert st["state"] == "cancelled" and api(server, "GET", f"/api/jobs/{b['id']}")[1]["position"] == 1
    api(server, "DELETE", f"/api/jobs/{a['id']}")  # the running one stops at its next chunk
    release.set()
    a = wait_until(server, a["id"], finished)
    assert a["state"] == "cancelled" and api(server, "GET", f"/api/jobs/{a['id']}/video")[0] == 404
    b = wait_until(server, b["id"], finished)
    assert b["state"] == "done" and b["frames_done"] == 32 and request(server, "GET", b["video"])[0] == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nwt_serve_runs_until_stopped_and_removes_its_files(bundle, media, tmp_path):
    """`nwt serve` as a person starts it: the URL it prints serves the page and generates; SIGTERM
    (as Ctrl-C) stops it with status 0 and the temporary folder gone."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "nwt.cli", "serve", "--model", str(bundle), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 90)
        line = proc.stdout.readline() if ready else ""
        match = re.search(r"open http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, proc.poll())
        srv = SimpleNamespace(port=int(match.group(1)))
        assert request(srv, "GET", "/")[0] == 200
        st = wait_until(srv, submit(srv, media["speech"])[1]["id"], finished)
        assert st["state"] == "done" and len(list(tmp_path.glob("nwt-serve-*/*.mp4"))) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "stopping" in err and not list(tmp_path.glob("nwt-serve-*"))


def test_a_missing_model_or_a_busy_port_is_a_clear_error_at_start(bundle, tmp_path, capsys, monkeypatch):
    assert main(["serve", "--model", str(tmp_path / "none.pt")]) == 2
    assert "nwt serve: error: --model" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # no checkout, an empty store: say how to get a model
    assert main(["serve"]) == 2
    assert "no model to generate with" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", _free_port()))
        busy.listen()
        assert main(["serve", "--model", str(bundle), "--port", str(busy.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    assert main(["serve", "--model", str(bundle), "--max-seconds", "0.1"]) == 2
    assert "--max-seconds must be at least 0.2" in capsys.readouterr().err


def test_in_a_checkout_it_serves_the_last_dvc_repro(tmp_path, monkeypatch):
    """No --model in a checkout: its checkpoints, params.yaml's sampling, its shards' reference frames."""
    from nwt.generate import default_sampling
    from nwt.params import load_params

    checkout = make_checkout(tmp_path / "checkout")
    monkeypatch.chdir(checkout)
    served = ServedModel.load()
    assert served.description.startswith("checkpoints models/dvae/dvae.pt")
    assert served.sampling == default_sampling(load_params(checkout / "params.yaml"))
    assert sorted(served.references) == ["ep0", "ep1"] and served.unseen_ids == ["ep1"]
    assert abs(float(served.references["ep1"].mean()) - GREY["ep1"]) < 3


def test_help_lists_serve_with_an_example():
    parser = build_parser()
    assert "    serve " in parser.format_help()
    help_text = parser._subparsers._group_actions[0].choices["serve"].format_help()
    assert "examples:" in help_text and "\n  nwt serve " in help_text and "127.0.0.1" in help_text


# ----------------------------------------------------------------------------- headless Chromium
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
                  "--no-proxy-server", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  "--autoplay-policy=no-user-gesture-required"]


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    JSON messages ending in NUL on file descriptors 3 and 4), one page; every wait is bounded."""

    def __init__(self, exe: str, profile: Path):
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def fds() -> None:  # the child's fds 3 (commands in) and 4 (answers out)
            a, b = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([exe, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
                                      "about:blank"], preexec_fn=fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf, self._id, self.events, self.session = b"", 0, [], None
        target = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)["sessionId"]
        for domain in ("Page.enable", "Network.enable", "Runtime.enable"):
            self.send(domain)

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._in], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._in, 1 << 16) if ready else b""
            if not chunk:
                raise TimeoutError("chromium did not answer" if not ready else "chromium closed the pipe")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\0")
        return json.loads(line)

    def send(self, method: str, timeout: float = 30, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._id:
                assert "error" not in reply, (method, reply["error"])
                return reply.get("result", {})
            self.events.append(reply)

    def evaluate(self, expression: str, check: bool = True):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            assert not check, result["exceptionDetails"]
            return None
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        """The expression's value once truthy (while the page loads it may throw: not yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression, check=False)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}: page says {self.state()}")

    def state(self) -> dict:
        return self.evaluate("({status: document.getElementById('status').dataset.state, "
                             "text: document.getElementById('status-text').textContent, "
                             "message: document.getElementById('message').textContent})")

    def upload(self, selector: str, path: Path) -> None:
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout=10)
        except (TimeoutError, OSError, AssertionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)


PLAYED = ("(() => { const v = document.getElementById('video'); "
          "return v.readyState >= 2 && isFinite(v.duration) && v.duration > 0 ? v.duration : null; })()")
MESSAGE = "(() => { const m = document.getElementById('message'); return m.hidden ? '' : m.textContent; })()"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium: `apt-get install chromium` (scripts/setup.sh installs it)")


def _generate_in_page(browser: Browser) -> float:
    """Click Generate, wait for the video to play; its duration."""
    browser.evaluate("document.getElementById('go').click()")
    browser.wait_for("document.getElementById('status').dataset.state === 'done'", timeout=40)
    return browser.wait_for(PLAYED, timeout=20)


def test_the_page_in_headless_chromium(server, media, tmp_path):
    browser = Browser(_chromium(), tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=f"http://127.0.0.1:{server.port}/")
        browser.wait_for("document.body.dataset.ready === '1'", timeout=20)
        assert browser.evaluate("document.querySelectorAll('input[name=episode]').length") == 3  # <unk>, ep0, ep1
        assert browser.evaluate("document.getElementById('format').value") in ("mp4", "webm")
        browser.upload("#file", media["speech"])  # through the file input, as a person picks a file
        browser.wait_for("!document.getElementById('go').disabled", timeout=10)
        assert abs(_generate_in_page(browser) - SPEECH_S) <= 1 / FPS
        assert browser.evaluate("document.getElementById('download').download") == "speech-nwt.mp4" or \
            browser.evaluate("document.getElementById('format').value") == "webm"
        for name, message in (("text", "not audio that ffmpeg can read"), ("long", "longer than 4 s")):
            browser.upload("#file", media[name])
            browser.evaluate("document.getElementById('go').click()")
            shown = browser.wait_for(MESSAGE, timeout=20)
            assert message in shown and browser.state()["status"] == "refused", shown
        # a recording: Chromium's fake microphone (a beep), through MediaRecorder
        browser.evaluate("document.getElementById('record').click()")
        browser.wait_for("document.getElementById('record').textContent.includes('Stop')", timeout=10)
        time.sleep(1.5)
        browser.evaluate("document.getElementById('record').click()")
        browser.wait_for("document.getElementById('source').textContent.startsWith('recording.')", timeout=10)
        assert _generate_in_page(browser) > 0.5
        urls = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
        assert urls and all(u.startswith(f"http://127.0.0.1:{server.port}/") or u.startswith(("blob:", "data:"))
                            for u in urls), urls  # nothing leaves the machine
    finally:
        browser.close()
