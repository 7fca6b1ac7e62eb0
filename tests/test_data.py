"""Render streams are step-indexed: the same batches with or without worker processes."""
import torch

from hairlib.mini.data import RenderBatches, stream


def test_stream_is_deterministic_and_resumable():
    data = RenderBatches(batch=3, seed=5, size=16)
    solo = stream(data, 0, workers=0)
    first = [next(solo) for _ in range(4)]
    assert first[0]["images"].shape == (3, 3, 16, 16) and set(first[0]["labels"]) >= {"hair_color", "hairstyle"}
    assert not torch.equal(first[0]["images"], first[1]["images"])
    parallel = stream(data, 2, workers=2)  # resumed at step 2, rendered in two processes
    for k in (2, 3):
        assert torch.equal(next(parallel)["images"], first[k]["images"])


def test_stream_with_captions():
    from hairlib.mini.train_clip import captions_for

    item = RenderBatches(batch=2, seed=1, size=16, caption_fn=captions_for)[0]
    assert len(item["captions"]) == 2 and all(isinstance(c, str) for c in item["captions"])
