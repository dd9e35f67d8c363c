"""Drawing the synthetic presenter: identities, per-episode looks, head sprite, eyes and mouth,
the studio set and the face-less slides.

The face shading encodes what made OpenCV's Haar `frontalface_default` find the face in 100 % of
the prototype's face frames (and nothing on slides): forehead, cheekbones and nose bridge brighter
than the skin (with an additive offset so dark skin keeps contrast), soft dark eye sockets, lips
darker than the skin, eye whites tied to skin brightness, a hairline that is not too low. Change the
geometry below with a detector test at hand.

One presenter: the face, skin and voice family come from a fixed `Identity` (identity 0 is the
default presenter of the embedded corpus); an `EpisodeLook` varies only hair, shirt, set, framing,
speaking rate and pitch. A model trained on a handful of looks cannot generalise to a new face
(≈25 dB on seen looks vs ≈20 dB on an unseen one), so faces stay fixed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from nwt.data.synthetic.text import slide_text

BGR = tuple[int, int, int]

# ---------------------------------------------------------------- geometry (stage pixels)
STAGE_W, STAGE_H = 1280, 720  # the camera crops and scales from this stage to the output frame
SPRITE_HX, SPRITE_HY = 170, 220  # head sprite half-size; the face centre is the sprite centre
FACE_A, FACE_B = 92, 120  # face ellipse half-axes
FACE_Y = 330  # face centre height on the stage
EYE_DX, EYE_DY = 36, -14  # eye centres relative to the face centre
MOUTH_DY = 62
SECOND_PRESENTER_DX = 0.22  # second presenter's distance from the first, × stage width

# ---------------------------------------------------------------- identities
# BGR skin tones of the prototype, light to dark.
SKIN_TONES: tuple[BGR, ...] = (
    (180, 205, 240), (150, 185, 225), (120, 160, 205), (90, 130, 180), (60, 95, 140), (45, 70, 105),
)


@dataclass(frozen=True)
class Identity:
    """A presenter's fixed traits: the same in every episode that uses this identity."""

    skin: BGR
    voice_variant: str  # appended to the config's espeak voice ("" = the plain voice)
    base_pitch: int  # espeak pitch 0–100; episodes vary it by ±PITCH_JITTER


IDENTITIES: tuple[Identity, ...] = (
    Identity(skin=SKIN_TONES[2], voice_variant="", base_pitch=50),  # 0: the default presenter
    Identity(skin=SKIN_TONES[4], voice_variant="+m3", base_pitch=42),
    Identity(skin=SKIN_TONES[0], voice_variant="+f3", base_pitch=58),
    Identity(skin=SKIN_TONES[5], voice_variant="+f4", base_pitch=55),
    Identity(skin=SKIN_TONES[1], voice_variant="+m1", base_pitch=46),
    Identity(skin=SKIN_TONES[3], voice_variant="+f2", base_pitch=60),
)

# ---------------------------------------------------------------- per-episode look
HAIR_COLOURS: tuple[BGR, ...] = (
    (20, 20, 25), (30, 50, 80), (40, 90, 150), (80, 160, 210), (30, 60, 160), (170, 170, 175),
)
HAIR_STYLES = ("short", "long", "receding", "bun")
PRESENTER_XS = (0.4, 0.5, 0.6)  # framing: presenter position × stage width
RATE_RANGE = (140, 185)  # espeak words per minute
PITCH_JITTER = 8
COLOUR_RANGE = (30, 230)
WALL_RANGE = (40, 220)


@dataclass(frozen=True)
class EpisodeLook:
    """The per-episode (unlabelled, latent) attributes: everything that changes between episodes."""

    hair_style: str
    hair_colour: BGR
    shirt: BGR
    wall_top: BGR
    wall_bottom: BGR
    set_seed: int  # lays out the set's panels, monitor and desk
    presenter_x: float
    rate: int
    pitch: int

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _colour(rng: np.random.Generator, lo_hi: tuple[int, int]) -> BGR:
    return tuple(int(c) for c in rng.integers(lo_hi[0], lo_hi[1], 3))  # type: ignore[return-value]


def random_look(rng: np.random.Generator, identity: Identity) -> EpisodeLook:
    return EpisodeLook(
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
        hair_colour=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
        shirt=_colour(rng, COLOUR_RANGE),
        wall_top=_colour(rng, WALL_RANGE),
        wall_bottom=_colour(rng, WALL_RANGE),
        set_seed=int(rng.integers(2**31)),
        presenter_x=float(rng.choice(PRESENTER_XS)),
        rate=int(rng.integers(*RATE_RANGE)),
        pitch=int(identity.base_pitch + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1)),
    )


# ---------------------------------------------------------------- visemes
# espeak phoneme mnemonic -> (mouth opening 0..1, mouth width 0..1)
_VISEME_GROUPS: list[tuple[tuple[float, float], list[str]]] = [
    ((0.0, 0.50), ["_", "_:", "_!", "_|", ";", ":"]),
    ((0.0, 0.45), "p b m".split()),
    ((0.10, 0.55), "f v".split()),
    ((0.22, 0.55), "T D t d n l".split()),
    ((0.12, 0.68), "s z".split()),
    ((0.25, 0.38), "S Z tS dZ j".split()),
    ((0.32, 0.55), "k g N h x ?".split()),
    ((0.15, 0.28), "w r".split()),
    ((1.0, 0.62), "a a# A: aI aU V A@ aa".split()),
    ((0.62, 0.60), "E e@ eI @ 3 3: @L @2 @5".split()),
    ((0.38, 0.82), "i: i I I2 I# i@ I@".split()),
    ((0.72, 0.35), "O: O@ 0 OI".split()),
    ((0.55, 0.34), ["oU"]),
    ((0.32, 0.25), "u: U U@".split()),
]
VISEMES: dict[str, tuple[float, float]] = {p: shape for shape, group in _VISEME_GROUPS for p in group}
DEFAULT_VISEME = (0.3, 0.55)
REST_WIDTH = 0.5
VISEME_RATE = 100  # the viseme track is built at 10 ms resolution
COARTICULATION_SIGMA_S = 0.030  # Gaussian smoothing of the viseme track (coarticulation)
# The jaw opens wider on louder syllables. Visemes alone correlate only r ≈ 0.3–0.4 with per-frame
# log loudness inside speech, so the opening of non-closed visemes blends in the loudness; a sync
# model then has a learnable audio-mouth relation.
LOUDNESS_WEIGHT = 0.6
LOUDNESS_RANGE_DB = 40.0  # loudness maps 0..1 over this range below the episode's loud level
LOUD_PERCENTILE = 95
SILENCE_DBFS = -60.0


def viseme(phoneme: str) -> tuple[float, float]:
    """(opening, width) for an espeak mnemonic; unknown ones fall back by prefix, then a neutral shape."""
    p = phoneme.strip()
    for key in (p, p[:2], p[:1]):
        if key in VISEMES:
            return VISEMES[key]
    return DEFAULT_VISEME


def loudness(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    """Loudness 0..1 per 10 ms (VISEME_RATE): dB mapped over LOUDNESS_RANGE_DB below the loud level."""
    hop = sample_rate // VISEME_RATE
    n = len(pcm) // hop
    rms = np.sqrt(np.mean(pcm[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    db = 20 * np.log10(rms + 1e-12)
    voiced = db[db > SILENCE_DBFS]
    loud = np.percentile(voiced, LOUD_PERCENTILE) if len(voiced) else 0.0
    return np.clip((db - (loud - LOUDNESS_RANGE_DB)) / LOUDNESS_RANGE_DB, 0, 1)


def mouth_track(phonemes: list[tuple[float, str]], n_frames: int, fps: int,
                loud: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (opening, width) at frame centres.

    Each phoneme holds its viseme until the next one; open visemes blend in `loud` (0..1 at
    VISEME_RATE, from `loudness`) by LOUDNESS_WEIGHT; then a 30 ms Gaussian smooths the steps the
    way coarticulation does.
    """
    duration = n_frames / fps
    n = int(duration * VISEME_RATE) + 1
    opening = np.zeros(n)
    width = np.full(n, REST_WIDTH)
    ends = [t for t, _ in phonemes[1:]] + [duration]
    for (t, p), t_next in zip(phonemes, ends):
        a = int(t * VISEME_RATE)
        b = max(int(t_next * VISEME_RATE), a + 1)
        opening[a:b], width[a:b] = viseme(p)
    if loud is not None:
        level = np.zeros(n)
        level[: min(n, len(loud))] = loud[:n]
        opening = np.where(opening > 0, (1 - LOUDNESS_WEIGHT) * opening + LOUDNESS_WEIGHT * level, 0.0)
    sigma = COARTICULATION_SIGMA_S * VISEME_RATE
    taps = np.arange(-int(np.ceil(3 * sigma)), int(np.ceil(3 * sigma)) + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    opening = np.convolve(opening, kernel, "same")
    width = np.convolve(np.pad(width, len(taps) // 2, mode="edge"), kernel, "valid")
    t_frames = (np.arange(n_frames) + 0.5) / fps * VISEME_RATE
    grid = np.arange(n)
    return np.clip(np.interp(t_frames, grid, opening), 0, 1), np.interp(t_frames, grid, width)


# ---------------------------------------------------------------- head sprite
def _blur_ellipse(img: np.ndarray, centre, axes, colour, alpha: float, sigma: float) -> None:
    """Blend a softly edged ellipse of `colour` into float `img` (soft shading is what Haar keys on)."""
    mask = np.zeros(img.shape[:2], np.float32)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)[..., None] * alpha
    img[:] = img * (1 - mask) + np.asarray(colour, np.float32) * mask


def _highlight(skin: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """Brighter than skin, with an additive offset so dark skin still gets contrast."""
    return np.minimum(skin * gain + offset, 255)


def head_sprite(identity: Identity, hair_style: str, hair_colour: BGR) -> tuple[np.ndarray, np.ndarray]:
    """The static head (no eye or mouth interiors): uint8 BGR (2·HY, 2·HX, 3) and float32 alpha."""
    img = np.zeros((2 * SPRITE_HY, 2 * SPRITE_HX, 3), np.float32)
    alpha = np.zeros((2 * SPRITE_HY, 2 * SPRITE_HX), np.float32)
    cx, cy = SPRITE_HX, SPRITE_HY
    skin = np.array(identity.skin, np.float32)
    hair = np.array(hair_colour, np.float32)

    def fill_ellipse(centre, axes, colour, start=0, end=360) -> None:
        cv2.ellipse(img, centre, axes, 0, start, end, np.asarray(colour, float).tolist(), -1, cv2.LINE_AA)
        cv2.ellipse(alpha, centre, axes, 0, start, end, 1.0, -1, cv2.LINE_AA)

    if hair_style == "long":  # hair behind the head
        fill_ellipse((cx, cy + 20), (FACE_A + 30, FACE_B + 60), hair)
    # neck
    cv2.rectangle(img, (cx - 42, cy + 60), (cx + 42, cy + 152), (skin * 0.85).tolist(), -1)
    cv2.rectangle(alpha, (cx - 42, cy + 60), (cx + 42, cy + 152), 1.0, -1)
    for s in (-1, 1):  # ears
        fill_ellipse((cx + s * (FACE_A - 2), cy + 5), (16, 28), skin * 0.9)
    # face with radial shading (brighter centre, darker rim)
    yy, xx = np.mgrid[0 : 2 * SPRITE_HY, 0 : 2 * SPRITE_HX].astype(np.float32)
    r = np.sqrt(((xx - cx) / FACE_A) ** 2 + ((yy - cy + 10) / FACE_B) ** 2)
    shade = np.clip(1.08 - 0.35 * r**3, 0.6, 1.1)[..., None]
    face = np.zeros_like(alpha)
    cv2.ellipse(face, (cx, cy), (FACE_A, FACE_B), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    img[:] = img * (1 - face[..., None]) + (skin * shade) * face[..., None]
    np.maximum(alpha, face, out=alpha)
    for s in (-1, 1):  # soft dark eye sockets: the strongest Haar cue
        _blur_ellipse(img, (cx + s * EYE_DX, cy + EYE_DY), (30, 18), skin * 0.55, 0.8, 6)
    _blur_ellipse(img, (cx, cy - 62), (55, 22), _highlight(skin, 1.15, 18), 0.7, 8)  # forehead
    for s in (-1, 1):  # cheekbones
        _blur_ellipse(img, (cx + s * 44, cy + 20), (22, 12), _highlight(skin, 1.15, 18), 0.7, 6)
    _blur_ellipse(img, (cx, cy + 2), (9, 38), _highlight(skin, 1.2, 22), 0.8, 4)  # nose bridge
    for s in (-1, 1):  # nose side shadows and nostrils
        _blur_ellipse(img, (cx + s * 15, cy + 16), (5, 22), skin * 0.7, 0.6, 4)
        cv2.ellipse(img, (cx + s * 9, cy + 36), (6, 4), 0, 0, 360, (skin * 0.45).tolist(), -1, cv2.LINE_AA)
    brow = np.minimum(hair * 0.6, skin * 0.45).tolist()
    for s in (-1, 1):
        cv2.ellipse(img, (cx + s * EYE_DX, cy - 36), (26, 9), 0, 200, 340, brow, 6, cv2.LINE_AA)
    # hair on top; the hairline stays above the forehead highlight
    if hair_style in ("short", "long", "bun"):
        fill_ellipse((cx, cy - 72), (FACE_A + 8, 72), hair, 180, 360)
        cv2.rectangle(img, (cx - FACE_A - 8, cy - 72), (cx + FACE_A + 8, cy - 84), hair.tolist(), -1)
        if hair_style == "bun":
            fill_ellipse((cx, cy - 150), (32, 32), hair)
    elif hair_style == "receding":  # a thin cap
        cv2.ellipse(img, (cx, cy - 82), (FACE_A + 2, 55), 0, 190, 350, hair.tolist(), -1, cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8), alpha


# ---------------------------------------------------------------- eyes and mouth
EYE_OPEN_HALF_HEIGHT = 10
LID_COLOUR = (25, 25, 30)
IRIS_COLOUR = (40, 50, 60)
MOUTH_INSIDE = (30, 20, 60)
TEETH = (230, 235, 235)
OPEN_MOUTH_MIN = 0.06  # below this the lips are drawn closed
TEETH_MIN = 0.25


def draw_dynamic(sprite: np.ndarray, identity: Identity, opening: float, width: float, blink: float) -> None:
    """Draw eyes (with `blink` 0..1 closing the lids) and the mouth onto a uint8 head sprite copy."""
    cx, cy = SPRITE_HX, SPRITE_HY
    skin = np.array(identity.skin, np.float32)
    h = int(round(EYE_OPEN_HALF_HEIGHT * (1 - blink)))
    sclera = tuple(int(min(200, 0.55 * c + 95)) for c in identity.skin)  # tied to skin brightness
    socket = (skin * 0.6).tolist()
    for s in (-1, 1):
        ex, ey = cx + s * EYE_DX, cy + EYE_DY
        if h >= 2:
            cv2.ellipse(sprite, (ex, ey), (15, h), 0, 0, 360, sclera, -1, cv2.LINE_AA)
            cv2.circle(sprite, (ex, ey), min(9, h + 1), IRIS_COLOUR, -1, cv2.LINE_AA)
            cv2.circle(sprite, (ex, ey), min(4, h), (5, 5, 5), -1, cv2.LINE_AA)
            # re-draw the lids as a thick outline so the iris never pokes out
            cv2.ellipse(sprite, (ex, ey), (22, h + 4), 0, 0, 360, socket, 5, cv2.LINE_AA)
        lid_y = ey - (h if h >= 2 else 0)
        cv2.ellipse(sprite, (ex, lid_y), (19, 4), 0, 180 if h >= 2 else 0, 360, LID_COLOUR, 3, cv2.LINE_AA)
    mx, my = cx, cy + MOUTH_DY
    mw = int(18 + 20 * width)
    mh = int(3 + 22 * opening)
    lip = tuple(int(c) for c in skin * np.array([0.62, 0.58, 0.85]))  # darker than skin, reddish
    cv2.ellipse(sprite, (mx, my), (mw + 5, mh // 2 + 6), 0, 0, 360, lip, -1, cv2.LINE_AA)
    if opening > OPEN_MOUTH_MIN:
        cv2.ellipse(sprite, (mx, my), (mw, max(mh // 2, 1)), 0, 0, 360, MOUTH_INSIDE, -1, cv2.LINE_AA)
        if opening > TEETH_MIN:
            cv2.ellipse(sprite, (mx, my - mh // 2 + 2), (int(mw * 0.75), 4), 0, 0, 180, TEETH, -1, cv2.LINE_AA)
    else:
        cv2.line(sprite, (mx - mw, my), (mx + mw, my), (40, 30, 80), 2, cv2.LINE_AA)


def composite(frame: np.ndarray, sprite: np.ndarray, alpha: np.ndarray, m: np.ndarray) -> None:
    """Warp `sprite` by the 2×3 affine `m` and alpha-blend it into `frame` in place.

    Only the sprite's bounding rectangle is warped and blended (≈6× fewer pixels in wide shots
    than warping whole frames), which keeps rendering well above real time on one core.
    """
    h, w = sprite.shape[:2]
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
    x0 = max(int(np.floor(corners[:, 0].min())), 0)
    y0 = max(int(np.floor(corners[:, 1].min())), 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + 1, frame.shape[1])
    y1 = min(int(np.ceil(corners[:, 1].max())) + 1, frame.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    shifted = m.astype(np.float64).copy()
    shifted[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    patch = cv2.warpAffine(sprite, shifted, size, flags=cv2.INTER_LINEAR)
    a = cv2.warpAffine(alpha, shifted, size, flags=cv2.INTER_LINEAR)
    roi = frame[y0:y1, x0:x1]
    roi[:] = cv2.blendLinear(patch, roi, a, 1 - a)


# ---------------------------------------------------------------- set and slides
def stage_background(look: EpisodeLook, bodies: list[tuple[float, BGR]]) -> np.ndarray:
    """The 1280×720 studio: a wall gradient, coloured panels, a monitor and a window on opposite
    sides (so cuts change the colour histogram), the presenters' shoulders and a desk.

    bodies: (x as a fraction of stage width, shirt colour) per presenter; empty for a face-less set.
    """
    r = np.random.default_rng(look.set_seed)
    stage = np.zeros((STAGE_H, STAGE_W, 3), np.uint8)
    g = np.linspace(0, 1, STAGE_H, dtype=np.float32)[:, None, None]
    stage[:] = (np.array(look.wall_top) * (1 - g) + np.array(look.wall_bottom) * g).astype(np.uint8)
    x = 0
    while x < STAGE_W:  # wall panels
        w = int(r.integers(120, 300))
        cv2.rectangle(stage, (x + 8, 40), (x + w - 8, 420), _colour(r, COLOUR_RANGE), -1)
        x += w
    side = 1 if look.presenter_x <= 0.5 else -1
    mx = int(STAGE_W * (0.5 + side * 0.32))  # monitor with a bar chart
    cv2.rectangle(stage, (mx - 170, 90), (mx + 170, 330), (20, 20, 20), -1)
    cv2.rectangle(stage, (mx - 160, 100), (mx + 160, 320), _colour(r, (60, 255)), -1)
    for i in range(8):
        bh = int(r.integers(30, 190))
        cv2.rectangle(stage, (mx - 150 + 38 * i, 320 - bh), (mx - 124 + 38 * i, 320), _colour(r, (0, 255)), -1)
    wx = int(STAGE_W * (0.5 - side * 0.36))  # window with a skyline
    cv2.rectangle(stage, (wx - 120, 60), (wx + 120, 380), (235, 200, 150), -1)
    for i in range(7):
        bh = int(r.integers(60, 250))
        cv2.rectangle(stage, (wx - 120 + 34 * i, 380 - bh), (wx - 92 + 34 * i, 380), (90, 80, 70), -1)
    for x_frac, shirt in bodies:
        px = int(x_frac * STAGE_W)
        cv2.ellipse(stage, (px, STAGE_H + 20), (270, 270), 0, 180, 360, shirt, -1, cv2.LINE_AA)
        cv2.ellipse(stage, (px, 478), (50, 30), 0, 0, 180, [int(c * 0.7) for c in shirt], -1, cv2.LINE_AA)
    cv2.rectangle(stage, (0, 640), (STAGE_W, STAGE_H), _colour(r, (40, 120)), -1)  # desk
    cv2.putText(stage, f"NEWS {int(r.integers(1, 24))}", (STAGE_W // 2 - 120, 700), cv2.FONT_HERSHEY_DUPLEX,
                1.6, (240, 240, 240), 3, cv2.LINE_AA)
    return stage


SLIDE_BULLETS = 3
SLIDE_BARS = 5
DARK_SLIDE_SUM = 380  # below this colour sum the slide text is white


def slide(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A face-less cut-away: a flat colour card with a title, bullets and a bar chart."""
    colour = _colour(rng, (0, 255))
    img = np.full((height, width, 3), colour, np.uint8)
    ink = (255, 255, 255) if sum(colour) < DARK_SLIDE_SUM else (0, 0, 0)
    sx, sy = width / 640, height / 360  # layout designed at 640×360
    title, bullets = slide_text(rng, SLIDE_BULLETS)
    cv2.putText(img, title, (int(40 * sx), int(80 * sy)), cv2.FONT_HERSHEY_DUPLEX, 1.4 * sy, ink, 2, cv2.LINE_AA)
    for i, line in enumerate(bullets):
        cv2.putText(img, line, (int(60 * sx), int((150 + 50 * i) * sy)), cv2.FONT_HERSHEY_SIMPLEX, 0.9 * sy, ink, 2,
                    cv2.LINE_AA)
    for i in range(SLIDE_BARS):
        h = int(rng.integers(20, 120))
        cv2.rectangle(img, (int((420 + 40 * i) * sx), int((330 - h) * sy)), (int((450 + 40 * i) * sx), int(330 * sy)),
                      ink, -1)
    return img
