import numpy as np

from nwt.data.shards import ShardWriter, clip_sample, iter_clips, random_frames, shard_paths


def _write(tmp_path, n_clips=6, frames=6):
    rng = np.random.default_rng(0)
    with ShardWriter(tmp_path, "train", max_count=2) as writer:
        for i in range(n_clips):
            video = rng.integers(0, 255, (frames, 256, 224, 3), dtype=np.uint8)
            audio = rng.uniform(-0.5, 0.5, frames * 640).astype(np.float32)
            writer.write(clip_sample(f"ep{i % 2}_{i:05d}", video, audio, 16000, dict(episode_index=i % 2)))
    return shard_paths(tmp_path, "train")


def test_round_trip(tmp_path):
    paths = _write(tmp_path)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    clips = list(iter_clips(paths))
    assert [c.key for c in clips] == [f"ep{i % 2}_{i:05d}" for i in range(6)]
    c = clips[0]
    assert c.frames.shape == (6, 256, 224, 3) and c.audio.shape == (6 * 640,)
    assert c.meta["n_frames"] == 6 and c.episode_index == 0


def test_same_clips_give_byte_identical_shards(tmp_path):
    """No write time in the tar: rewriting the same clips leaves data/shards' DVC hash unchanged."""
    import time

    first = _write(tmp_path / "a")
    time.sleep(1.1)  # tar mtimes have 1-s resolution
    second = _write(tmp_path / "b")
    assert [open(p, "rb").read() for p in first] == [open(p, "rb").read() for p in second]


def test_random_frames_batches_and_ranks(tmp_path):
    paths = _write(tmp_path)
    frames, episodes = next(random_frames(paths, batch_size=4, seed=0, buffer_size=8))
    assert frames.shape == (4, 256, 224, 3) and frames.dtype == np.uint8 and episodes.shape == (4,)
    a = next(random_frames(paths, 4, seed=1, buffer_size=8))[0]
    b = next(random_frames(paths, 4, seed=1, buffer_size=8))[0]
    assert np.array_equal(a, b)  # seeded: resumable
    # two ranks read disjoint clips: with 6 clips alternating episodes, rank r sees clips r, r+2, r+4
    r0 = next(random_frames(paths, 4, seed=0, rank=0, world_size=2, buffer_size=8))[1]
    r1 = next(random_frames(paths, 4, seed=0, rank=1, world_size=2, buffer_size=8))[1]
    assert set(r0.tolist()) == {0} and set(r1.tolist()) == {1}


def test_unfinished_shard_is_not_left_under_its_name(tmp_path):
    try:
        with ShardWriter(tmp_path, "val") as writer:
            writer.write(clip_sample("a_00000", np.zeros((2, 256, 224, 3), np.uint8), np.zeros(1280, np.float32),
                                     16000, dict(episode_index=0)))
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert shard_paths(tmp_path, "val") == []


def test_readers_split_clips_disjointly_and_completely(tmp_path):
    from nwt.data.shards import epoch_samples

    paths = _write(tmp_path, n_clips=7)
    for world in (2, 3):
        seen = [[s["__key__"] for s in epoch_samples(paths, seed=5, epoch=0, rank=r, world_size=world)]
                for r in range(world)]
        flat = [k for part in seen for k in part]
        assert len(flat) == len(set(flat)) == 7  # every clip once, to exactly one reader


def test_random_windows_carry_aligned_audio(tmp_path):
    from nwt.data.shards import random_windows

    paths = _write(tmp_path, frames=6)
    frames, audio, meta = next(random_windows(paths, window_frames=4, seed=0))
    assert frames.shape == (4, 256, 224, 3) and audio.shape == (4 * 640,)
    assert 0 <= meta["window_start"] <= 2
    clip = next(c for c in iter_clips(paths) if c.key == meta["key"])
    s = meta["window_start"]
    assert np.abs(audio - clip.audio[s * 640:(s + 4) * 640]).max() < 1e-4
