from nwt.checkpoint import files_fingerprint, fingerprint


def test_files_fingerprint_sees_contents_not_just_sizes(tmp_path):
    """Token shards of a retrained dVAE keep their sizes (fixed-shape arrays): a fingerprint of
    names and sizes let a finished prior checkpoint be resumed on new tokens."""
    a, b = tmp_path / "a" / "train-000000.tar", tmp_path / "b" / "train-000000.tar"
    a.parent.mkdir(), b.parent.mkdir()
    a.write_bytes(bytes(range(256)) * 4)
    b.write_bytes(bytes(reversed(range(256))) * 4)
    assert a.stat().st_size == b.stat().st_size
    assert fingerprint(files_fingerprint([a])) != fingerprint(files_fingerprint([b]))
    b.write_bytes(a.read_bytes())
    assert fingerprint(files_fingerprint([a])) == fingerprint(files_fingerprint([b]))
