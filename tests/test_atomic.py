"""Atomic writes: the old file or the new one, never half of one, and no temporary left behind."""
import pytest

from hairlib.atomic import atomic_path, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "table.md"
    assert write_text(target, "old\n") == target and target.read_text() == "old\n"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        assert target.read_text() == "old\n"  # not replaced while the block runs
        raise RuntimeError("interrupted")
    assert target.read_text() == "old\n" and sorted(p.name for p in target.parent.iterdir()) == ["table.md"]
    write_text(target, "new\n")
    assert target.read_text() == "new\n" and sorted(p.name for p in target.parent.iterdir()) == ["table.md"]


def test_keep_suffix_lets_pil_pick_the_format(tmp_path):
    from PIL import Image

    out = tmp_path / "edit.png"
    with atomic_path(out, keep_suffix=True) as tmp:
        assert tmp.suffix == ".png" and tmp != out
        Image.new("RGB", (4, 4), (200, 10, 10)).save(tmp)
    assert Image.open(out).format == "PNG" and Image.open(out).getpixel((1, 1)) == (200, 10, 10)
