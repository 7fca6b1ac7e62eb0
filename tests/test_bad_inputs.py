"""Every input a person can give gets a right answer or a clear refusal: exit 2, one message naming
the file or argument and the fix, no traceback, nothing written (issue "reliability").

Pictures come from skimage's offline data (a photo of a person, a coffee cup, a cat) and the mini
renderer; damaged weights are copies of the shipped ones, truncated or altered in place."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hairlib import cli
from hairlib.images import read_image
from hairlib.mini import render as R
from hairlib.mini.world import WEIGHTS_DIR

skdata = pytest.importorskip("skimage.data")


def refused(capsys, argv, *needles, out=None):
    """Run the CLI in-process: exit 2, every needle in the one message, no traceback, ``out`` absent."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    if out is not None:
        assert not out.exists()
    return err


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    d = tmp_path_factory.mktemp("pictures")
    Image.fromarray(skdata.astronaut()).save(d / "astronaut.png")
    Image.fromarray(skdata.coffee()).save(d / "coffee.png")
    cat = skdata.chelsea()
    Image.fromarray(cat[:, 75:375]).save(d / "cat.png")  # square, so only its content can refuse it
    Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(d / "one.png")
    renders = R.render_batch(R.sample_params(3, n=2), size=256)[0]
    Image.fromarray(renders[0]).save(d / "render.png")
    Image.fromarray(np.concatenate(renders, 1)).save(d / "two.png")
    (d / "truncated.png").write_bytes((d / "render.png").read_bytes()[:500])
    return d, renders


def edit(pictures, name, tmp_path, *extra):
    d, _ = pictures
    out = tmp_path / "out.png"
    return ["edit", "--image", str(d / name), "--method", "mapper", "--text", "afro", "--invert-steps", "0",
            "--out", str(out), *extra], out


# ---- pictures the mini world cannot represent ---------------------------------------------------

def test_a_photo_of_a_person_in_the_mini_world_says_use_the_ffhq_world(pictures, tmp_path, capsys):
    argv, out = edit(pictures, "astronaut.png", tmp_path)
    refused(capsys, argv, "astronaut.png", "--world ffhq", "cartoon", out=out)


@pytest.mark.parametrize("name", ["coffee.png", "cat.png", "one.png", "two.png"])
def test_no_mini_world_face_is_refused(pictures, tmp_path, capsys, name):
    argv, out = edit(pictures, name, tmp_path)
    err = refused(capsys, argv, name, out=out)
    assert "no mini-world face" in err or "not a mini-world render" in err


def test_a_truncated_image_is_named(pictures, tmp_path, capsys):
    argv, out = edit(pictures, "truncated.png", tmp_path)
    refused(capsys, argv, "cannot read image", "truncated.png", out=out)


def test_a_render_at_any_size_is_edited_and_the_picture_shows_the_real_input(pictures, tmp_path, capsys):
    argv, out = edit(pictures, "render.png", tmp_path, "--text", "afro hairstyle")
    assert cli.main(argv) == 0, capsys.readouterr().err
    grid = np.asarray(Image.open(out))
    assert grid.shape[0] > 2.5 * grid.shape[1] / 2  # three rows: input, reconstruction, edit


# ---- weights -----------------------------------------------------------------------------------

@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    d = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, d)
    monkeypatch.setenv("HAIRLIB_MINI_WEIGHTS", str(d))
    return d


def test_truncated_shipped_weights_are_named_with_the_fix(weights_copy, tmp_path, capsys):
    f = weights_copy / "stylegan2.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    out = tmp_path / "o.png"
    refused(capsys, ["edit", "--text", "afro", "--method", "mapper", "--out", str(out)],
            "stylegan2.safetensors", "damaged", "reinstall", out=out)


def test_same_size_corrupted_weights_are_caught_by_their_sha256(weights_copy, tmp_path, capsys):
    f = weights_copy / "encoder.safetensors"
    data = bytearray(f.read_bytes())
    data[-1000:-900] = bytes(100)  # the last tensor's bytes: a file that still parses
    f.write_bytes(bytes(data))
    out = tmp_path / "o.png"
    refused(capsys, ["edit", "--text", "afro", "--method", "mapper", "--out", str(out)],
            "encoder.safetensors", "sha256", out=out)


def test_every_shipped_file_has_its_sha256_beside_it():
    files = sorted(WEIGHTS_DIR.glob("*.safetensors")) + sorted(WEIGHTS_DIR.glob("mappers/*.safetensors"))
    assert len(files) >= 10
    from hairlib.nets.loading import load_safetensors

    for f in files:
        assert f.with_suffix(".json").exists(), f
        load_safetensors(f)  # checks the sha256


# ---- arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--n", "0"], "--n must be at least 1"),
    (["--steps", "-5"], "--steps must be at least 1"),
    (["--truncation", "50"], "--truncation must be"),
    (["--alpha", "nan", "--method", "global"], "--alpha must be a finite number"),
    (["--beta", "2", "--method", "global"], "--beta must be"),
    (["--invert-steps", "-1"], "--invert-steps must be at least 0"),
    (["--device", "tpu"], "--device 'tpu' is not a device"),
    (["--face", "0"], "--face must be at least 1"),
])
def test_arguments_are_checked_before_any_work(tmp_path, capsys, args, needle):
    out = tmp_path / "o.png"
    refused(capsys, ["edit", "--text", "afro", "--out", str(out), *args], needle, out=out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    out = tmp_path / "o.png"
    refused(capsys, ["edit", "--text", "afro", "--device", "cuda", "--out", str(out)], "no CUDA GPU", "--device cpu",
            out=out)
    refused(capsys, ["eval", "--device", "cuda", "--out", str(tmp_path / "e")], "no CUDA GPU")


def test_an_unwritable_out_is_refused_before_the_work(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    refused(capsys, ["edit", "--text", "afro", "--out", str(blocker / "o.png")], "cannot write", "--out")
    refused(capsys, ["eval", "--n", "1", "--out", str(blocker / "eval")], "cannot write")
    refused(capsys, ["edit", "--text", "afro", "--out", str(tmp_path)], "is a folder")
    refused(capsys, ["edit", "--text", "afro", "--save-latents", str(blocker / "w.pt"), "--out",
                     str(tmp_path / "o.png")], "cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_default_outputs_never_overwrite_tracked_files():
    p = cli.build_parser()
    for argv in (["edit", "--text", "x"], ["eval"], ["bench", "edit", "--quick"], ["bench", "ops"]):
        assert p.parse_args(argv).out.startswith("runs/"), argv


# ---- decoding ----------------------------------------------------------------------------------

def test_16_bit_grayscale_decodes_to_its_grey_levels(tmp_path, pictures):
    _, renders = pictures
    grey = renders[0].astype(np.float64).mean(-1)
    Image.fromarray((grey * 257).round().astype(np.uint16)).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    got = np.asarray(read_image(tmp_path / "g16.png"), dtype=np.float64)
    assert got.shape == grey.shape + (3,)
    assert np.abs(got[..., 0] - grey).max() <= 1.0  # not white: the same grey levels


def test_exif_orientation_palette_and_alpha(tmp_path, pictures):
    _, renders = pictures
    im = Image.fromarray(renders[0])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90 degrees clockwise
    im.rotate(90, expand=True).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = np.asarray(read_image(tmp_path / "phone.jpg"), dtype=np.float64)
    assert np.abs(upright - renders[0]).mean() < 4  # JPEG noise only
    im.quantize(64).save(tmp_path / "palette.png")
    assert np.abs(np.asarray(read_image(tmp_path / "palette.png"), dtype=np.float64) - renders[0]).mean() < 6
    rgba = np.concatenate([renders[0], np.full(renders[0].shape[:2] + (1,), 255, np.uint8)], -1)
    rgba[:32, :32, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    with pytest.warns(UserWarning, match="composited on white"):
        got = np.asarray(read_image(tmp_path / "alpha.png"))
    assert (got[:32, :32] == 255).all() and (got[40:] == renders[0][40:]).all()


def test_several_faces_are_counted_and_a_patch_is_not_a_face(pictures):
    pytest.importorskip("dlib")
    from hairlib.align import align_with_info

    d, _ = pictures
    faces = align_with_info(d / "astronaut.png", size=64, faces="all")
    assert len(faces) == 1  # her face; the flag on her sleeve (detector score 0.12) is not one
    assert faces[0].faces_found == 1 and faces[0].score > 1.0


# ---- mapper prompts ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, name", [("afro hairstyle", "afro"), ("an afro", "afro"), ("curly hair", "curly"),
                                        ("red hair", "red"), ("smiling", "smiling"), ("a smile", "smiling"),
                                        ("afro", "afro"), ("blond hair", "blond"), ("a bob cut", "bob")])
def test_mappers_are_found_by_natural_phrasings(text, name):
    from types import SimpleNamespace

    from hairlib.methods.mapper import find_mapper
    from hairlib.mini.world import shipped_mappers

    world = SimpleNamespace(**shipped_mappers(WEIGHTS_DIR))
    assert find_mapper(world, text).stem == name
    assert find_mapper(world, "red afro") is None and find_mapper(world, "purple hair") is None


def test_no_mapper_names_the_known_prompts_in_cli_syntax(tmp_path, capsys):
    out = tmp_path / "o.png"
    refused(capsys, ["edit", "--text", "purple hair", "--method", "mapper", "--out", str(out)],
            "no mapper for 'purple hair'", "--mapper PATH", "afro ('a photo of a person with an afro.')", out=out)
