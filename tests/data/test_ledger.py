import pytest

from nwt.data.ledger import Ledger, read_ledger


def test_ledger_counts_and_round_trip(tmp_path):
    ledger = Ledger("faces")
    ledger.keep("ep/shot000", "face in 10/10")
    ledger.reject("ep/shot001", "no_face", "face in 0/10")
    ledger.reject("ep/shot002", "multiple_faces")
    ledger.write(tmp_path / "ledger.parquet")
    frame = read_ledger(tmp_path / "ledger.parquet")
    assert list(frame.columns) == ["item", "status", "reason", "detail"]
    assert (ledger.kept, ledger.rejected) == (1, 2)
    assert len(frame) == ledger.kept + ledger.rejected
    assert "no_face 1" in ledger.summary()


def test_unknown_reason_is_refused():
    with pytest.raises(ValueError, match="unknown rejection reason"):
        Ledger("x").reject("a", "made_up")


def test_an_item_cannot_be_listed_twice(tmp_path):
    ledger = Ledger("x")
    ledger.keep("a")
    ledger.reject("a", "corrupt")
    with pytest.raises(RuntimeError, match="twice"):
        ledger.write(tmp_path / "l.parquet")


def test_atomic_writes_get_normal_file_modes(tmp_path):
    import os

    from nwt.atomic import write_json

    write_json(tmp_path / "x.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask
