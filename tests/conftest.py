"""Test markers: `gpu` (skipped without CUDA), `network` (skipped unless HAIRLIB_NETWORK=1),
`slow` (skipped unless --run-slow). Everything else runs on CPU, offline, in CI."""
import os

from dataclasses import replace

import pytest
import torch

from hairlib.ops import _build

# Most tests run tiny networks, where extra threads only add synchronisation; and on a shared
# machine two OpenMP threads beside another busy process can slow a test tenfold.
torch.set_num_threads(int(os.environ.get("HAIRLIB_TEST_THREADS", "1")))
# The compiled ops are shared by every test, worker and notebook kernel (each test's HAIRLIB_HOME is
# empty): pinned to the user's own build root, whose directories are keyed by the sources,
# toolchain and CPU, so one build serves all, where each would otherwise compile the CPU kernels
# again (~50 s of CPU).
os.environ["TORCH_EXTENSIONS_DIR"] = str(_build._cache_root())


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_net = pytest.mark.skip(reason="needs the internet (set HAIRLIB_NETWORK=1)")
    skip_slow = pytest.mark.skip(reason="slow (use --run-slow)")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "network" in item.keywords and os.environ.get("HAIRLIB_NETWORK") != "1":
            item.add_marker(skip_net)
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test sees an empty hairlib cache unless it sets its own HAIRLIB_HOME."""
    monkeypatch.setenv("HAIRLIB_HOME", str(tmp_path_factory.mktemp("hairlib_home")))


TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 48, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1}}


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A mini-world weights folder of tiny random networks (wiring tests, not behaviour)."""
    from hairlib.mini import shipping, train_clip
    from hairlib.nets.mini_nets import AttributeClassifier, Encoder, EncoderConfig, IdentityNet
    from hairlib.nets.stylegan2 import Generator, StyleGAN2Config

    d = tmp_path_factory.mktemp("mini_weights")
    torch.manual_seed(0)
    arch = StyleGAN2Config(size=16, style_dim=16, n_mlp=1, channel_multiplier=0.25, channel_max=16)
    G = Generator(arch)
    shipping.save_shipped("stylegan2", G, {"arch": arch.to_dict()}, d)
    clf = AttributeClassifier()
    shipping.save_shipped("classifier", clf, {"config": clf.config.to_dict()}, d)
    idn = IdentityNet()
    shipping.save_shipped("identity", idn, {"config": idn.config.to_dict()}, d)
    enc = Encoder(EncoderConfig(G.num_ws, 16, image_size=16), G.get_latent_avg())
    shipping.save_shipped("encoder", enc, {"config": enc.config.to_dict()}, d)
    model = train_clip.build_model(TINY_CLIP)[0]
    train_clip.export(model, {}, replace(train_clip.RECIPE, steps=0), config=TINY_CLIP, dest=d)
    from hairlib.nets.mini_nets import MiniParser, ParserConfig

    parser = MiniParser(ParserConfig(widths=(4, 8)))
    shipping.save_shipped("parser", parser, {"config": parser.config.to_dict()}, d)
    return d
