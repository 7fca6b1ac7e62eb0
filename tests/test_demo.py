"""`hairlib demo` runs offline on CPU and writes its picture."""
from PIL import Image

from hairlib import cli


def test_demo_writes_a_grid(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    img = Image.open(tmp_path / "demo.png")
    # 7 rows (renders, hair mask, three ground-truth edits, mini StyleGAN2 samples, inversions)
    # of 8 faces at 2x of 64 px
    assert img.width > 8 * 128 and img.height >= 7 * 128
