"""CLIP wrapper: loading (config + state dict, OpenAI layout, TorchScript, ViT-B/32 via the
weights cache), text embeddings and prompt templates, StyleCLIP's image path, the CLIP losses.

A tiny open_clip model (embed 32, width 64, 2 layers, 32 px input) stands in for ViT-B/32; it
uses CLIP's real BPE tokenizer, so text goes through the same path as in the ffhq world.
"""
import copy

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hairlib.nets.clip import (CLIP, IMAGENET_TEMPLATES, OPENAI_MEAN, OPENAI_STD, clip_loss,
                               directional_clip_loss, load_clip, resize_for_clip)

pytestmark = [pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]

# a mini-world-like CLIP: GELU, 2 heads of 32 in the vision tower
CFG = dict(embed_dim=32,
           vision_cfg=dict(layers=2, width=64, head_width=32, patch_size=8, image_size=32),
           text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2))
# OpenAI's conventions (QuickGELU, 64-wide heads), so the architecture can be read off the shapes
OPENAI_CFG = dict(embed_dim=32, quick_gelu=True,
                  vision_cfg=dict(layers=2, width=64, patch_size=8, image_size=32),
                  text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=2))
MEAN = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)


def build(cfg, seed):
    torch.manual_seed(seed)
    return open_clip.model.CLIP(**cfg).eval()


def ref_text(model, tokenizer, sentences):
    with torch.no_grad():
        return F.normalize(model.encode_text(tokenizer(sentences)), dim=-1)


def styleclip_input(x, size):
    """StyleCLIP's resize (nearest x7, AvgPool) then [0, 1] and CLIP's mean/std, by hand."""
    y = torch.nn.AvgPool2d(x.shape[-1] * 7 // size)(torch.nn.Upsample(scale_factor=7)(x))
    return ((y + 1) / 2 - MEAN) / STD


@pytest.fixture(scope="module")
def source():
    return build(CFG, seed=0)


@pytest.fixture(scope="module")
def clip(source, tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "mini_clip.pt"
    torch.save(source.state_dict(), path)
    return load_clip("mini", config=CFG, state_dict=path)


@pytest.fixture(scope="module")
def openai_files(tmp_path_factory):
    """A tiny CLIP saved as OpenAI ships it: a plain state dict, and a TorchScript archive that
    also holds OpenAI's integer entries (input_resolution, context_length, vocab_size)."""
    model = build(OPENAI_CFG, seed=1)
    root = tmp_path_factory.mktemp("openai")
    torch.save(model.state_dict(), root / "state_dict.pt")
    scripted = copy.deepcopy(model)
    for key, value in dict(input_resolution=32, context_length=77, vocab_size=49408).items():
        scripted.__dict__.pop(key, None)
        scripted.register_buffer(key, torch.tensor(value))
    traced = torch.jit.trace_module(scripted, {"encode_text": (torch.zeros(1, 77, dtype=torch.long),)})
    traced.save(str(root / "ViT-tiny.pt"))
    assert {"input_resolution", "context_length", "vocab_size"} <= set(traced.state_dict())
    return model, root / "state_dict.pt", root / "ViT-tiny.pt"


# ----------------------------------------------------------------------------------------------
# Templates and tokenizer


def test_imagenet_templates_are_openais_80():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    assert len(IMAGENET_TEMPLATES) == 80 and len(set(IMAGENET_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert IMAGENET_TEMPLATES[0] == "a bad photo of a {}." and IMAGENET_TEMPLATES[-1] == "a tattoo of the {}."
    assert [t.format("dog") for t in IMAGENET_TEMPLATES] == [f("dog") for f in OPENAI_IMAGENET_TEMPLATES]


def test_styleclip_ensembles_79_templates(clip, source):
    """StyleCLIP's global directions average over its copy of the list, which lacks one."""
    from hairlib.methods.global_dir import GlobalEditConfig
    from hairlib.prompts import STYLECLIP_TEMPLATES

    assert len(STYLECLIP_TEMPLATES) == 79 and "a photo of many {}." not in STYLECLIP_TEMPLATES
    assert set(IMAGENET_TEMPLATES) - set(STYLECLIP_TEMPLATES) == {"a photo of many {}."}
    assert GlobalEditConfig().templates == "styleclip"  # the paper's setting
    got = clip.encode_text("curly hair", templates="styleclip")
    by_hand = F.normalize(ref_text(source, clip.tokenizer, [t.format("curly hair") for t in STYLECLIP_TEMPLATES])
                          .mean(0), dim=-1)
    assert torch.allclose(got[0], by_hand, atol=1e-5)
    assert not torch.allclose(got, clip.encode_text("curly hair", templates="imagenet"), atol=1e-6)


def test_tokenizer_is_clips_bpe(clip):
    tokens = clip.tokenizer("a photo of a cat")
    assert tokens.shape == (1, 77) and tokens.dtype == torch.long
    # <start_of_text> a photo of a cat <end_of_text>, then padding
    assert tokens[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert not tokens[0, 7:].any()


def test_context_length_follows_the_config():
    cfg = copy.deepcopy(CFG)
    cfg["text_cfg"]["context_length"] = 16
    small = load_clip("ctx16", config=cfg, state_dict=build(cfg, seed=2).state_dict())
    assert small.tokenizer(["a face with curly hair"]).shape == (1, 16)
    assert small.encode_text("a face with curly hair").shape == (1, 32)


# ----------------------------------------------------------------------------------------------
# Loading from a config


def test_config_load_is_the_source_model_frozen(clip, source):
    assert isinstance(clip, CLIP) and clip.name == "mini"
    assert clip.image_size == 32 and clip.embed_dim == 32 and clip.dtype == torch.float32
    for k, v in source.state_dict().items():
        assert torch.equal(clip.model.state_dict()[k], v), k
    assert set(clip.state_dict()) == {"model." + k for k in source.state_dict()}  # mean/std not saved
    assert torch.allclose(clip.mean.flatten(), torch.tensor(OPENAI_MEAN))
    assert not any(p.requires_grad for p in clip.parameters())
    clip.train()  # frozen: a parent's .train() must not switch dropout etc. on
    assert not clip.training and not clip.model.training
    sentences = ["a face with red hair", "a bald man"]
    assert torch.allclose(clip.encode_text(sentences), ref_text(source, clip.tokenizer, sentences), atol=1e-6)


def test_strict_load_names_bad_keys(source):
    sd = source.state_dict()
    missing = {k: v for k, v in sd.items() if k != "ln_final.weight"}
    with pytest.raises(ValueError, match=r"missing keys: ln_final\.weight"):
        load_clip(config=CFG, state_dict=missing)
    with pytest.raises(ValueError, match=r"unexpected keys: visual\.extra"):
        load_clip(config=CFG, state_dict={**sd, "visual.extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"text_projection: checkpoint \(64, 16\) vs model \(64, 32\)"):
        load_clip(config=CFG, state_dict={**sd, "text_projection": torch.zeros(64, 16)})
    with pytest.raises(ValueError, match="embed_dim, vision_cfg, text_cfg"):
        load_clip(config={**CFG, "vision_config": {}}, state_dict=sd)
    with pytest.raises(ValueError, match="without weights"):
        load_clip(config=CFG)


def test_dtype_is_what_was_asked(source):
    c64 = load_clip("mini64", config=CFG, state_dict=source.state_dict(), dtype=torch.float64)
    assert c64.dtype == torch.float64 and c64.mean.dtype == torch.float32
    e = c64.encode_text(["red hair"])
    assert e.dtype == torch.float32  # embeddings are always fp32
    assert torch.allclose(e, ref_text(source, c64.tokenizer, ["red hair"]), atol=1e-5)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = F.normalize(source.encode_image(styleclip_input(x, 32)), dim=-1)
    assert torch.allclose(c64.encode_image(x), ref, atol=1e-5)
    with pytest.raises(ValueError, match="floating"):
        load_clip(config=CFG, state_dict=source.state_dict(), dtype=torch.int64)


# ----------------------------------------------------------------------------------------------
# Text


def test_text_embeddings_are_unit_and_deterministic(clip):
    prompts = ["red hair", "curly hair", "red hair"]
    e1 = clip.encode_text(prompts)
    assert e1.shape == (3, 32) and e1.dtype == torch.float32 and not e1.requires_grad
    assert torch.allclose(e1.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert torch.equal(e1[0], e1[2]) and not torch.allclose(e1[0], e1[1], atol=1e-3)
    clip.clear_cache()
    assert torch.allclose(clip.encode_text(prompts), e1, atol=1e-6)  # recomputed, same numbers
    assert torch.allclose(clip.encode_text("curly hair")[0], e1[1], atol=1e-6)  # batch-independent
    assert clip.encode_text([]).shape == (0, 32)


def test_templates_give_the_normalised_mean_of_templated_sentences(clip, source):
    plain = clip.encode_text("curly hair")
    engineered = clip.encode_text("curly hair", templates="imagenet")
    assert torch.allclose(engineered.norm(dim=-1), torch.ones(1), atol=1e-6)
    assert not torch.allclose(plain, engineered, atol=1e-3)
    per_template = ref_text(source, clip.tokenizer, [t.format("curly hair") for t in IMAGENET_TEMPLATES])
    by_hand = F.normalize(per_template.mean(dim=0), dim=-1)
    assert torch.allclose(engineered[0], by_hand, atol=1e-5)
    assert torch.equal(clip.encode_text("curly hair", templates=IMAGENET_TEMPLATES), engineered)

    mine = ["a face with {}.", "a photo of a person with {}."]
    both = clip.encode_text(["curly hair", "red hair"], templates=mine)
    for row, prompt in zip(both, ["curly hair", "red hair"]):
        by_hand = F.normalize(ref_text(source, clip.tokenizer, [t.format(prompt) for t in mine]).mean(0), dim=-1)
        assert torch.allclose(row, by_hand, atol=1e-5)
    # one template is the templated sentence itself
    assert torch.allclose(clip.encode_text("red hair", templates="a face with {}."),
                          clip.encode_text("a face with red hair."), atol=1e-6)
    with pytest.raises(ValueError, match="templates"):
        clip.encode_text("red hair", templates=["no placeholder"])


def test_text_cache_saves_encoder_calls_and_is_cleared(clip, monkeypatch):
    batches = []
    original = clip.model.encode_text

    def counting(tokens, *args, **kwargs):
        batches.append(tokens.shape[0])
        return original(tokens, *args, **kwargs)

    monkeypatch.setattr(clip.model, "encode_text", counting)
    templates = ["a {}.", "the {}."]
    clip.clear_cache()
    first = clip.encode_text(["blond hair", "bob cut"], templates=templates)
    assert batches == [4]
    assert torch.equal(clip.encode_text(["bob cut", "blond hair"], templates=templates), first.flip(0))
    assert batches == [4]  # all from the cache
    clip.encode_text(["bob cut", "afro"], templates=templates)
    assert batches == [4, 2]  # only the new prompt's two sentences
    clip.encode_text("bob cut")  # same prompt, other templates: another entry
    assert batches == [4, 2, 1]
    clip.float()  # .to(...) / .float() may change device or dtype: cache dropped
    clip.encode_text("bob cut")
    assert batches == [4, 2, 1, 1]
    clip.load_state_dict(clip.state_dict())  # new weights: cache dropped
    clip.encode_text("bob cut")
    assert batches == [4, 2, 1, 1, 1]
    n = len(clip._text_cache)
    clip.encode_text("bob cut", cache=False)  # cached, but asked afresh: encoded, and the cache untouched
    clip.encode_text("a face", cache=False)
    assert batches == [4, 2, 1, 1, 1, 1, 1] and len(clip._text_cache) == n


# ----------------------------------------------------------------------------------------------
# Images


@pytest.mark.parametrize("size_in,size_out", [(256, 224), (64, 224), (64, 32), ((64, 96), 32)])
def test_resize_equals_styleclips_upsample_then_avgpool(size_in, size_out):
    h, w = size_in if isinstance(size_in, tuple) else (size_in, size_in)
    x = torch.randn(2, 3, h, w)
    pool = torch.nn.AvgPool2d((h * 7 // size_out, w * 7 // size_out))
    ref = pool(torch.nn.Upsample(scale_factor=7)(x))
    out = resize_for_clip(x, size_out)
    assert out.shape == (2, 3, size_out, size_out)
    assert torch.allclose(out, ref, atol=1e-5)


def test_resize_other_sizes_bilinear_and_same_size_untouched():
    x = torch.randn(1, 3, 48, 48)  # 48 * 7 = 336 is no multiple of 32
    ref = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(resize_for_clip(x, 32), ref)
    y = torch.randn(1, 3, 32, 32)
    assert resize_for_clip(y, 32) is y


def test_encode_image_matches_manual_path_and_is_differentiable(clip, source):
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    e = clip.encode_image(x)
    with torch.no_grad():
        ref = F.normalize(source.encode_image(styleclip_input(x, 32)), dim=-1)
    assert e.shape == (2, 32) and torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-6)
    assert torch.allclose(e, ref, atol=1e-5)
    (e * clip.encode_text(["red hair", "bald"])).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.parameters())
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        clip.encode_image(torch.zeros(3, 64, 64))


def test_encode_pil_takes_photos_the_generator_path(clip):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    as_tensor = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        ref = clip.encode_image(as_tensor)
    assert torch.allclose(clip.encode_pil(Image.fromarray(arr)), ref, atol=1e-6)
    assert torch.allclose(clip.encode_pil(arr), ref, atol=1e-6)
    batch = clip.encode_pil(np.stack([arr, arr[::-1]]))
    assert batch.shape == (2, 32) and torch.allclose(batch[0], ref[0], atol=1e-6)
    wide = rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)  # centre crop -> columns 16:80
    assert torch.allclose(clip.encode_pil(wide), clip.encode_pil(np.ascontiguousarray(wide[:, 16:80])), atol=1e-6)
    assert clip.preprocess([arr, wide]).shape == (2, 3, 32, 32)
    with pytest.raises(TypeError, match="uint8"):
        clip.encode_pil(arr.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# Losses


def test_clip_loss_is_one_minus_cosine(clip):
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    t = clip.encode_text(["red hair", "a smiling face"])
    with torch.no_grad():
        e = clip.encode_image(x)
    loss = clip_loss(clip, x, t)
    assert loss.shape == (2,)
    assert torch.allclose(loss, 1 - (e * t).sum(-1), atol=1e-6)
    assert torch.allclose(clip_loss(clip, x, t[:1]), 1 - e @ t[0], atol=1e-6)  # [1, D] broadcasts
    assert torch.allclose(clip_loss(clip, x, e), torch.zeros(2), atol=1e-6)  # text = image direction
    assert torch.allclose(clip_loss(clip, x, -3 * e), torch.full((2,), 2.0), atol=1e-6)  # opposite
    xg = x.clone().requires_grad_(True)
    clip_loss(clip, xg, t).sum().backward()
    assert xg.grad.abs().sum() > 0


class EmbeddingsAsImages:
    """Stands in for CLIP: the 'images' are already embeddings, so the formula is tested alone."""

    @staticmethod
    def encode_image(x):
        return x


def test_directional_loss_formula():
    g = torch.Generator().manual_seed(0)
    src_img, src_txt, direction = (torch.randn(3, 8, generator=g) for _ in range(3))
    tgt_txt = src_txt + direction
    fake = EmbeddingsAsImages()
    parallel = directional_clip_loss(fake, src_img, src_img + 0.3 * direction, src_txt, tgt_txt)
    assert parallel.shape == (3,) and torch.allclose(parallel, torch.zeros(3), atol=1e-6)
    assert torch.allclose(directional_clip_loss(fake, src_img, src_img - direction, src_txt, tgt_txt),
                          torch.full((3,), 2.0), atol=1e-6)
    ortho = torch.randn(3, 8, generator=g)
    ortho = ortho - (ortho * direction).sum(-1, keepdim=True) / direction.pow(2).sum(-1, keepdim=True) * direction
    assert torch.allclose(directional_clip_loss(fake, src_img, src_img + ortho, src_txt, tgt_txt),
                          torch.ones(3), atol=1e-5)
    assert torch.allclose(directional_clip_loss(fake, src_img, src_img, src_txt, tgt_txt), torch.ones(3))
    # one text pair [1, D] for the whole batch
    one = directional_clip_loss(fake, src_img, src_img + direction[:1], src_txt[:1], tgt_txt[:1])
    assert torch.allclose(one, torch.zeros(3), atol=1e-6)


def test_directional_loss_on_clip_is_differentiable(clip):
    src = torch.rand(2, 3, 64, 64) * 2 - 1
    edit = (src + 0.2 * torch.randn_like(src)).requires_grad_(True)
    t_src, t_tgt = clip.encode_text(["a face with hair", "a face with curly hair"], templates="imagenet")
    loss = directional_clip_loss(clip, src, edit, t_src[None], t_tgt[None])
    assert loss.shape == (2,) and ((loss >= 0) & (loss <= 2)).all()
    loss.sum().backward()
    assert edit.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
# OpenAI checkpoints


def check_same_as(clip, model):
    sentences = ["a photo of a face", "curly red hair"]
    assert torch.allclose(clip.encode_text(sentences), ref_text(model, clip.tokenizer, sentences), atol=1e-6)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = F.normalize(model.encode_image(styleclip_input(x, 32)), dim=-1)
    assert torch.allclose(clip.encode_image(x), ref, atol=1e-6)


def test_openai_layout_state_dict_and_torchscript_load_by_path(openai_files):
    model, sd_path, jit_path = openai_files
    for path in (sd_path, jit_path):
        clip = load_clip(path)
        assert clip.name == str(path) and clip.dtype == torch.float32
        assert clip.embed_dim == 32 and clip.image_size == 32  # read off the shapes
        for k, v in model.state_dict().items():  # exact: no detour through fp16
            assert torch.equal(clip.model.state_dict()[k], v), k
        check_same_as(clip, model)
    # a dict in memory, with DataParallel's "module." prefix
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    check_same_as(load_clip(state_dict={"state_dict": sd}), model)


def test_openai_fp16_weights_load_as_fp32(openai_files):
    model, _, _ = openai_files
    clip = load_clip(state_dict={k: v.half() for k, v in model.state_dict().items()})
    assert clip.dtype == torch.float32
    ref = ref_text(model, clip.tokenizer, ["a face"])
    assert torch.allclose(clip.encode_text("a face"), ref, atol=2e-2)


def test_openai_layout_with_bad_keys_is_named(openai_files, tmp_path):
    model, _, _ = openai_files
    sd = model.state_dict()
    with pytest.raises(ValueError, match="ln_final.weight"):  # a key the shapes are read from
        load_clip(state_dict={k: v for k, v in sd.items() if k != "ln_final.weight"})
    key = "transformer.resblocks.1.mlp.c_fc.bias"
    path = tmp_path / "broken.pt"
    torch.save({k: v for k, v in sd.items() if k != key}, path)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_clip(path)
    torch.save({"text." + k: v for k, v in sd.items()}, path)  # open_clip custom-text layout
    with pytest.raises(ValueError, match="config= or model_name="):
        load_clip(path)


def test_open_clip_state_dict_with_a_model_name(source, monkeypatch):
    # open_clip's registry is stood in for, so no ViT-B-32-sized model is built here
    monkeypatch.setattr(open_clip, "get_model_config", lambda name: copy.deepcopy(CFG) if name == "tiny" else None)
    clip = load_clip(model_name="tiny", state_dict=source.state_dict())
    assert clip.name == "tiny"
    assert torch.allclose(clip.encode_text("a face"), ref_text(source, clip.tokenizer, ["a face"]), atol=1e-6)
    with pytest.raises(ValueError, match="no model 'huge'"):
        load_clip(model_name="huge", state_dict=source.state_dict())


def test_bad_names_and_paths(tmp_path):
    with pytest.raises(ValueError, match="ViT-B/32"):
        load_clip("ViT-X/99")
    with pytest.raises(FileNotFoundError):
        load_clip(tmp_path / "nowhere.pt")


def test_vit_b32_by_name_downloads_nothing_and_says_how(monkeypatch, openai_files):
    """Nets do no I/O: a name points to ``hairlib.weights``; the fetched file loads under its label."""
    weights = pytest.importorskip("hairlib.weights")
    monkeypatch.setattr(weights, "fetch", lambda *a, **k: pytest.fail("nets.clip must not download"))
    for name in ("ViT-B/32", "ViT-B-32", "vit-b/32"):
        with pytest.raises(FileNotFoundError, match=r"hairlib.weights.fetch\('clip-vit-b32'\)"):
            load_clip(name)
    model, _, jit_path = openai_files  # the fetched file is OpenAI's archive
    clip = load_clip(jit_path, label="ViT-B/32")
    assert clip.name == "ViT-B/32"
    check_same_as(clip, model)
