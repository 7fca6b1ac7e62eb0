"""HairCLIP's hair mapper: the authors' key layout, conditioning and loading."""
import pytest
import torch
import torch.nn.functional as F

from hairlib.nets.hair_mapper import HairMapper, load_hair_mapper_state
from hairlib.nets.loading import load_state_dict_strict


def authors_keys():
    keys = {}
    for sub, rows in (("course_mapping", 4), ("medium_mapping", 4), ("fine_mapping", 10)):
        for i in range(5):
            p = f"{sub}.modulation_module_list.{i}"
            keys[f"{p}.fc.weight"], keys[f"{p}.fc.bias"] = (512, 512), (512,)
            for fn in ("gamma_function", "beta_function"):
                for j, shape in ((0, (512, 512)), (1, (512,)), (3, (512, 512))):
                    keys[f"{p}.{fn}.{j}.weight"] = shape
                    keys[f"{p}.{fn}.{j}.bias"] = (512,)
    return keys


def test_key_layout_is_the_authors():
    sd = HairMapper(18, 512, 512).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == authors_keys()
    assert HairMapper(18).fine_mapping.modulation_module_list[0].norm.normalized_shape == (10, 512)


def test_module_maths_and_absent_conditions():
    torch.manual_seed(0)
    m = HairMapper(10, 8, 6)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    w, e = torch.randn(2, 10, 8), torch.randn(2, 6)
    # by hand, coarse rows with the hairstyle condition
    x = w[:, :4]
    x = x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)
    for mod in m.course_mapping.modulation_module_list:
        x = F.layer_norm(mod.fc(x), (4, 8))
        g = mod.gamma_function(e[:, None].expand(-1, 4, -1))
        b = mod.beta_function(e[:, None].expand(-1, 4, -1))
        x = F.leaky_relu(x * (1 + g) + b, 0.01)
    out = m(w, hairstyle=e, color=None)
    assert torch.allclose(out[:, :4], x, atol=1e-5)
    # colour absent: the fine rows still move (fc + norm in every module), independent of any colour
    y = w[:, 8:] * torch.rsqrt(w[:, 8:].pow(2).mean(1, keepdim=True) + 1e-8)
    for mod in m.fine_mapping.modulation_module_list:
        y = F.layer_norm(mod.fc(y), (2, 8))
    assert torch.allclose(out[:, 8:], y, atol=1e-5) and out[:, 8:].abs().sum() > 0
    # the colour drives only the fine rows, the hairstyle only coarse and medium
    out2 = m(w, hairstyle=e, color=torch.randn(2, 6))
    assert torch.equal(out2[:, :8], out[:, :8]) and not torch.allclose(out2[:, 8:], out[:, 8:])
    assert torch.allclose(m.edit(w, e, None), w + 0.1 * out)
    with pytest.raises(ValueError, match="W\\+ must be"):
        m(torch.randn(2, 18, 8))


def test_loads_the_authors_checkpoint_layout(tmp_path):
    m = HairMapper()
    sd = {f"mapper.{k}": v for k, v in m.state_dict().items()}
    sd["mapper.clip_model.visual.conv1.weight"] = torch.zeros(768, 3, 32, 32)  # their CLIP rides along
    sd["decoder.style.1.weight"] = torch.zeros(512, 512)
    torch.save({"state_dict": sd, "opts": {"stylegan_size": 1024}}, tmp_path / "hairclip.pt")
    ckpt = torch.load(tmp_path / "hairclip.pt", map_location="cpu", weights_only=True)
    back = HairMapper()
    load_state_dict_strict(back, load_hair_mapper_state(ckpt), "hairclip.pt")
    w, e = torch.randn(1, 18, 512), torch.randn(1, 512)
    assert torch.allclose(back(w, e, e), m(w, e, e))
    with pytest.raises(ValueError, match="does not fit"):
        load_state_dict_strict(HairMapper(18, 256, 512), load_hair_mapper_state(ckpt), "hairclip.pt")


def test_hairclip_edit_with_text_and_reference(tiny_weights):
    import hairlib

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    G = world.generator
    torch.manual_seed(0)
    mapper = HairMapper(G.num_ws, G.style_dim, world.clip.embed_dim)
    w = world.sample(2, seed=0)
    r = hairlib.edit(world, w, method="hairclip", hairstyle="afro hairstyle", mapper=mapper)
    assert r.images.shape == (2, 3, 16, 16) and r.text == {"hairstyle": "afro hairstyle", "color": None}
    other = hairlib.edit(world, w, method="hairclip", hairstyle="bob cut hairstyle", mapper=mapper)
    assert not torch.allclose(r.latents[:, :8], other.latents[:, :8])  # the text drives coarse + medium
    assert torch.allclose(r.latents[:, 8:], other.latents[:, 8:])  # ... not the fine rows
    world.masks = None
    with pytest.raises(ValueError, match="no face parser"):  # the paper's reference: the hair region
        hairlib.edit(world, w, method="hairclip", color=world.sample(1, seed=5), mapper=mapper, reference="image")
    read = hairlib.edit(world, w, method="hairclip", color=world.sample(1, seed=5), mapper=mapper, reference="text")
    assert torch.allclose(read.latents[:, :8], (w + 0.1 * mapper(w, None, None))[:, :8], atol=1e-5)
    world.masks = lambda x: {"hair": torch.ones_like(x[:, :1])}
    ref = hairlib.edit(world, w, method="hairclip", color=world.sample(1, seed=5), mapper=mapper, reference="image")
    assert torch.allclose(ref.latents[:, :8], (w + 0.1 * mapper(w, None, None))[:, :8], atol=1e-5)
    with pytest.raises(ValueError, match="hairstyle, a colour, or both"):
        hairlib.edit(world, w, method="hairclip", mapper=mapper)
    with pytest.raises(ValueError, match="not a text"):
        hairlib.edit(world, w, "afro", method="hairclip", mapper=mapper)
