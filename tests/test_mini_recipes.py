"""The mini StyleGAN2 recipe: renders in, a shippable generator out (tiny settings)."""
import torch

from hairlib.mini import train_stylegan2 as recipe
from hairlib.mini.world import load_generator
from hairlib.nets.stylegan2 import StyleGAN2Config
from hairlib.train.gan import GANTrainConfig, train_gan


def test_render_sampler_gives_training_renders():
    batch = recipe.render_sampler(64)(4, torch.Generator().manual_seed(0))
    assert batch.shape == (4, 3, 64, 64) and batch.min() >= -1 and batch.max() <= 1
    assert batch.std() > 0.1  # faces, not a flat colour


def test_train_export_and_load_round_trip(tmp_path):
    arch = StyleGAN2Config(size=16, style_dim=16, n_mlp=1, channel_multiplier=0.25, channel_max=16)
    G = train_gan(GANTrainConfig(arch=arch, batch=2, steps=2), recipe.render_sampler(16), tmp_path / "run",
                  progress=False)
    recipe.export(tmp_path / "run", dest=tmp_path / "weights")
    shipped = load_generator(tmp_path / "weights")
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(shipped(z, space="z"), G(z, space="z"))


def test_recipe_main_runs_logs_and_exports(tmp_path, capsys):
    from dataclasses import dataclass

    from hairlib.mini.shipping import recipe_main
    from hairlib.train.checkpoint import read_log

    @dataclass(frozen=True)
    class Cfg:
        steps: int = 10

    seen = {}

    def run(cfg, args):
        seen["steps"], seen["workers"] = cfg.steps, args.workers
        return "model", {"heldout": {"x": 0.75}}

    def export(model, metrics, cfg):
        seen["export"] = (model, cfg.steps)
        return tmp_path / "w.safetensors"

    argv = ["--out", str(tmp_path), "--steps", "3", "--workers", "2"]
    assert recipe_main(argv, doc="t", default_out=tmp_path, recipe=Cfg(), run=run, export=export, workers=True) == 0
    assert seen == {"steps": 3, "workers": 2, "export": ("model", 3)}
    assert "heldout x=0.750" in capsys.readouterr().out
    assert read_log(tmp_path / "log.jsonl")[-1] == {"eval": {"heldout": {"x": 0.75}}}
    seen.clear()
    recipe_main(argv[:4] + ["--no-export"], doc="t", default_out=tmp_path, recipe=Cfg(), run=lambda c, a: ("m", {"y": 1.0}),
                export=export)
    assert "export" not in seen


def test_encoder_starts_from_the_warm_start_encoder(tmp_path):
    import torch

    from hairlib.mini.train_encoder import init_from_warmstart
    from hairlib.nets.mini_nets import Encoder, EncoderConfig
    from hairlib.train.checkpoint import save_atomic

    torch.manual_seed(0)
    warm = Encoder(EncoderConfig(1, 16, (8, 8), image_size=16)).eval()
    with torch.no_grad():
        warm.head.weight.normal_()
        warm.head.bias.normal_()
    save_atomic({"model": {f"E.{k}": v for k, v in warm.state_dict().items()}}, tmp_path / "state.pt")
    enc = Encoder(EncoderConfig(6, 16, (8, 8), image_size=16), torch.randn(1, 16)).eval()
    init_from_warmstart(enc, tmp_path / "state.pt")
    x = torch.randn(3, 3, 16, 16)
    assert torch.allclose(enc(x), warm(x).expand(-1, 6, -1), atol=1e-5)
