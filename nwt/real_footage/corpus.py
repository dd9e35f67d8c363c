"""Broadcast-like episodes from short real clips: each clip scaled onto a wider canvas with its own
background, size and position, the clips joined back to back, so that every join is a full-frame
cut at a known frame. Audio is kept (each clip's, padded or trimmed to its video)."""
from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

CANVAS_W, CANVAS_H = 640, 360  # a 16:9 broadcast frame; the 224×256 clips sit inside it
FPS = 25  # the clips' rate and the pipeline's media.fps: cut frames are counted at it
SAMPLE_RATE = 44100  # the clips' audio rate, kept
# per clip (cycled): scaled height in px and left edge in px; the foot of the clip stands on the
# canvas's bottom edge (a presenter at a desk); sizes differ so that the face moves and scales at each cut
LAYOUTS = [(360, 40), (320, 300), (288, 176), (360, 380), (300, 60), (340, 200), (288, 330), (320, 20),
           (360, 260), (300, 150)]
# per clip: canvas colour and a side panel's colour (a studio graphic), all distinct, so a join changes
# every pixel around the clip
BACKGROUNDS = [("0x1f3a5f", "0xc8553d"), ("0x2e4a2e", "0xf0c808"), ("0x5b2a86", "0x9ad1d4"),
               ("0x6b4226", "0x2b2d42"), ("0x0b6e4f", "0xe0e2db"), ("0x8d0801", "0x8ecae6"),
               ("0x33415c", "0xffb703"), ("0x3d405b", "0x81b29a"), ("0x14213d", "0xfca311"),
               ("0x4a4e69", "0xc9ada7")]
# the corpora of the check: episode sizes in clips, taken in sorted file order
CORPORA = {"one_video": [10], "three_videos": [4, 3, 3]}


@dataclass(frozen=True)
class Placement:
    """One clip inside an episode: frames [start, end) at FPS, where it sits (x, y, w, h) on the canvas."""

    clip: str
    start: int
    end: int
    rect: tuple[int, int, int, int]
    background: str


@dataclass(frozen=True)
class Episode:
    episode_id: str
    path: Path
    placements: list[Placement]

    @property
    def cuts(self) -> list[int]:
        """The true cut frames: the first frame of every clip but the first."""
        return [p.start for p in self.placements[1:]]

    @property
    def n_frames(self) -> int:
        return self.placements[-1].end


def count_frames(path: Path) -> int:
    """Decoded video frames of a file (ffprobe -count_frames: exact, not the container's estimate)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip().isdigit():
        raise ValueError(f"{path}: cannot count its video frames ({out.stderr.strip()[-200:]})")
    return int(out.stdout.strip())


def _clip_filters(i: int, n_frames: int, layout: tuple[int, int], colours: tuple[str, str],
                  clip_size: tuple[int, int]) -> tuple[str, tuple[int, int, int, int]]:
    """ffmpeg filtergraph of input i → [v{i}][a{i}], exactly n_frames long; and the clip's rect."""
    height, x = layout
    width = int(round(clip_size[0] * height / clip_size[1] / 2)) * 2
    y = CANVAS_H - height
    dur = n_frames / FPS
    panel_x = 0 if x > CANVAS_W // 2 - width // 2 else CANVAS_W - CANVAS_W // 4
    graph = (f"color=c={colours[0]}:s={CANVAS_W}x{CANVAS_H}:r={FPS}:d={dur:.4f},"
             f"drawbox=x={panel_x}:y=40:w={CANVAS_W // 4}:h={CANVAS_H // 2}:color={colours[1]}:t=fill[bg{i}];"
             f"[{i}:v]fps={FPS},scale={width}:{height}:flags=area,setsar=1[fg{i}];"
             f"[bg{i}][fg{i}]overlay=x={x}:y={y}:shortest=1,trim=end_frame={n_frames},setpts=PTS-STARTPTS,"
             f"format=yuv420p[v{i}];"
             f"[{i}:a]aresample={SAMPLE_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
             f"apad=whole_dur={dur:.4f},atrim=end={dur:.4f},asetpts=PTS-STARTPTS[a{i}]")
    return graph, (x, y, width, height)


def build_episode(episode_id: str, clips: list[Path], first: int, out_dir: Path,
                  clip_size: tuple[int, int] = (224, 256)) -> Episode:
    """Join `clips` (layouts and backgrounds from index `first` on) into `out_dir/<episode_id>.mp4`.

    clip_size: the clips' (width, height); all clips must share it and FPS (checked by the caller's
    frame count: a clip at another rate would make the true cuts wrong)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs, placements, start = [], [], 0
    for k, clip in enumerate(clips):
        n = count_frames(clip)
        layout, colours = LAYOUTS[(first + k) % len(LAYOUTS)], BACKGROUNDS[(first + k) % len(BACKGROUNDS)]
        graph, rect = _clip_filters(k, n, layout, colours, clip_size)
        graphs.append(graph)
        placements.append(Placement(clip.name, start, start + n, rect, colours[0]))
        start += n
    joins = "".join(f"[v{k}][a{k}]" for k in range(len(clips)))
    graph = ";".join(graphs) + f";{joins}concat=n={len(clips)}:v=1:a=1[v][a]"
    out = out_dir / f"{episode_id}.mp4"
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y"]
    for clip in clips:
        cmd += ["-i", str(clip)]
    cmd += ["-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "18", "-r", str(FPS), "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not build {out.name}: {proc.stderr.strip()[-500:]}")
    episode = Episode(episode_id, out, placements)
    made = count_frames(out)
    if made != episode.n_frames:
        raise RuntimeError(f"{out.name}: {made} frames written, {episode.n_frames} planned: the true cuts would be off")
    (out_dir / f"{episode_id}.placements.json").write_text(
        json.dumps([asdict(p) for p in placements], indent=1))
    return episode


def gt_clips(gt_dir: Path) -> list[Path]:
    """The real clips in sorted order; a clear error when the folder is not there or empty."""
    clips = sorted(Path(gt_dir).glob("*.mp4"))
    if not clips:
        raise FileNotFoundError(f"no *.mp4 clips in {gt_dir} (the nwt_samples gt/ folder; see its README.md)")
    return clips


def build_corpus(name: str, gt_dir: Path, out_dir: Path) -> list[Episode]:
    """The corpus `name` of CORPORA from the clips of gt_dir: episodes `rf_<name>_<k>` in out_dir."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {sorted(CORPORA)}")
    clips = gt_clips(gt_dir)
    sizes = CORPORA[name]
    if sum(sizes) > len(clips):
        raise ValueError(f"corpus {name} needs {sum(sizes)} clips, {gt_dir} has {len(clips)}")
    episodes, first = [], 0
    for k, size in enumerate(sizes):
        episodes.append(build_episode(f"rf_{name}_{k}", clips[first:first + size], first, out_dir))
        first += size
    return episodes
