"""A folder of images -> a latents file (StyleCLIP's train_faces.pt format), resumable."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import hairlib
from hairlib.latents import prepare_latents
from hairlib.mini import render as R


@pytest.fixture(scope="module")
def world(tiny_weights):
    return hairlib.load_world("mini", weights_dir=tiny_weights)


def test_folder_to_latents_file_and_resume(world, tmp_path, monkeypatch):
    images = R.render_batch(R.sample_params(np.random.default_rng(0), n=5))[0]
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / f"face{i}.png")
    (tmp_path / "broken.png").write_bytes(b"nope")
    out = tmp_path / "train_faces.pt"
    # interrupt after the first batch: the partial file keeps it
    calls = []
    real = world.invert

    def flaky(x, steps=None, **k):
        calls.append(x.shape[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(x, steps=steps, **k)
    monkeypatch.setattr(world, "invert", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare_latents(world, tmp_path, out, batch=2, steps=1, progress=False)
    assert (tmp_path / "train_faces.pt.partial.pt").exists() and not out.exists()
    monkeypatch.setattr(world, "invert", real)
    lat = prepare_latents(world, tmp_path, out, batch=2, steps=1, progress=False)
    assert lat.shape == (5, world.generator.num_ws, world.generator.style_dim)
    back = torch.load(out, weights_only=True)
    assert torch.equal(back, lat)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["rows"] == [f"face{i}.png" for i in range(5)] and meta["skipped"] == ["broken.png"]
    assert not (tmp_path / "train_faces.pt.partial.pt").exists()
    with pytest.raises(FileNotFoundError, match="no images"):
        prepare_latents(world, tmp_path / "empty", out)
