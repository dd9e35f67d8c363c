import functools
import http.server
import threading

import pytest

from nwt.data.download import ManifestRow, fetch_manifest_episode, read_manifest, synthetic_specs
from nwt.data.media import MediaError


@pytest.fixture
def server(tiny_video):
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Handler, directory=str(tiny_video.parent)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()


def test_url_download_and_archive_skip(tmp_path, server, tiny_video):
    base, hits = server
    row = ManifestRow("ep1", f"{base}/{tiny_video.name}")
    first = fetch_manifest_episode(row, str(tmp_path), str(tmp_path))
    assert (tmp_path / "ep1.mp4").read_bytes() == tiny_video.read_bytes()
    assert first["digest"] and hits
    n = len(hits)
    again = fetch_manifest_episode(row, str(tmp_path), str(tmp_path), dict(source=row.source, digest=first["digest"]))
    assert len(hits) == n and again["digest"] == first["digest"]  # archived: not fetched again
    (tmp_path / "ep1.mp4").write_bytes(b"torn")  # a damaged file is fetched anew
    fetch_manifest_episode(row, str(tmp_path), str(tmp_path), dict(source=row.source, digest=first["digest"]))
    assert len(hits) > n and (tmp_path / "ep1.mp4").read_bytes() == tiny_video.read_bytes()
    assert not list(tmp_path.glob(".*"))


def test_unreachable_url_is_download_failed(tmp_path, server):
    base, _ = server
    with pytest.raises(MediaError) as err:
        fetch_manifest_episode(ManifestRow("gone", f"{base}/nothing.mp4"), str(tmp_path), str(tmp_path))
    assert err.value.reason == "download_failed" and "nothing.mp4" in str(err.value)


@pytest.mark.parametrize("bad", ["a/b", "../x", "x;rm -rf", "a b", "", "$(id)"])
def test_ids_are_checked_before_any_path_or_command(tmp_path, bad):
    with pytest.raises(MediaError) as err:
        fetch_manifest_episode(ManifestRow(bad, "whatever.mp4"), str(tmp_path), str(tmp_path))
    assert err.value.reason == "bad_id"
    assert list(tmp_path.iterdir()) == []


def test_manifest_format_errors(tmp_path):
    (tmp_path / "m.csv").write_text("id,url\na,b\n")
    with pytest.raises(ValueError, match="episode_id"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "d.csv").write_text("episode_id,source\na,x.mp4\na,y.mp4\n")
    with pytest.raises(ValueError, match="repeats"):
        read_manifest(tmp_path / "d.csv")
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "none.csv")


def test_the_real_lwt_manifest_parses():
    from conftest import REPO

    rows = read_manifest(REPO / "manifests" / "lwt_nwt_test_episodes.csv")  # profiles/lwt.yaml's manifest
    assert len(rows) == 41 and all(r.source.startswith("https://www.youtube.com/watch?v=") for r in rows)


def test_synthetic_specs_follow_the_section():
    from conftest import repo_section

    from nwt.params import DownloadParams, with_changes

    cfg = with_changes(repo_section("download", DownloadParams).synthetic, episodes=3, seconds=12.5, seed=2,
                       identities=4)
    specs = synthetic_specs(cfg, 25, 16000)
    assert [s["episode_id"] for s in specs] == ["synth-000", "synth-001", "synth-002"]
    assert [s["seed"] for s in specs] == [20_000, 20_001, 20_002]
    assert all(s["seconds"] == 12.5 and s["identities"] == 4 and (s["fps"], s["sample_rate"]) == (25, 16000)
               for s in specs)
