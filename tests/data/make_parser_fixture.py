"""Regenerate the face-parser parity fixtures in this folder (not run by the tests).

Needs a checkout of wty-ustc/HairCLIP (commit df2e28a) for its ``criteria/parse_related_loss``
(``unet.py`` and ``model_utils.py``: plain PyTorch and numpy, CPU is fine). Nothing of theirs is
committed here; the weights and input come from ``synthetic_state_dict`` / ``synthetic_input`` in
``tests/test_parser.py``, so the test rebuilds them instead of storing 7.8 MB.

    python tests/data/make_parser_fixture.py /path/to/HairCLIP

Writes:
  parser_keys.json           every key of HairCLIP's ``unet()`` state dict with its shape, in order
  parser_ref.safetensors     HairCLIP's logits for the synthetic weights and a [1, 3, 32, 48] input:
                             ``logits_sampled`` (every 4th pixel, [1, 19, 8, 12]), ``labels`` (the
                             argmax at every pixel, uint8 [1, 32, 48]), and guards against the
                             weights or input drifting (``weights_abs_sum``, ``input_sample``)
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


def main(hairclip_dir: str) -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, hairclip_dir)
    sys.path.insert(0, str(HERE.parent))
    from criteria.parse_related_loss.unet import unet  # noqa: E402  (HairCLIP's)

    net = unet()  # as HairCLIP builds it: feature_scale=4, n_classes=19, deconv, BatchNorm
    keys = {k: list(v.shape) for k, v in net.state_dict().items()}
    (HERE / "parser_keys.json").write_text("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(s)}"
                                                           for k, s in keys.items()) + "\n}\n")
    from test_parser import REF_SAMPLE, synthetic_input, synthetic_state_dict  # noqa: E402  (reads the keys)

    sd = synthetic_state_dict(keys)
    net.load_state_dict(sd)  # strict, as HairCLIP loads parsenet.pth
    net.eval()
    x = synthetic_input()
    with torch.no_grad():
        logits = net(x)
    save_file({
        "logits_sampled": logits[REF_SAMPLE].contiguous(),
        "labels": logits.argmax(1).to(torch.uint8),
        "weights_abs_sum": torch.tensor(sum(v.double().abs().sum().item() for v in sd.values() if v.is_floating_point()),
                                        dtype=torch.float64),
        "input_sample": x[0, :, 0, :4].contiguous(),
    }, str(HERE / "parser_ref.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
