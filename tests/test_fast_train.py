"""The fast training execution: same parameters, same results (fp32 within 1e-4, bf16 within
bf16 rounding), chosen automatically; hairlib's CPU kernels against the PyTorch references;
``hairlib bench train``."""
import pytest
import torch

from hairlib import ops
from hairlib.nets.stylegan2 import Discriminator, Generator, StyleGAN2Config, make_kernel
from hairlib.train.gan import (GANStep, GANTrainConfig, StepExecution, choose_execution, d_logistic_loss,
                               g_nonsaturating_loss, make_optimizers, r1_penalty)
from hairlib.train import gan

# every block of the generator and discriminator at 16 px: upsampling and plain modulated
# convolutions, ToRGB with its skip, residual blocks, the minibatch standard deviation
ARCH = StyleGAN2Config(size=16, style_dim=32, n_mlp=2, channel_multiplier=0.125, channel_max=32)


def kernels_available() -> bool:
    return ops.cpu.KERNELS.available()


def nets(seed=0, arch=ARCH):
    torch.manual_seed(seed)
    G, D = Generator(arch), Discriminator(arch)
    with torch.no_grad():  # non-zero noise strengths and biases, so that every term is tested
        for name, p in list(G.named_parameters()) + list(D.named_parameters()):
            if name.endswith("noise.weight") or name.endswith("activate.bias") or name.endswith(".bias"):
                p.normal_(0, 0.3)
    return G, D


def inputs(G, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    wplus = G.to_wplus(torch.randn(n, G.style_dim, generator=g), "z").detach()
    noise = [torch.randn(n, 1, *b.shape[2:], generator=g) for b in G.make_noise()]
    real = torch.rand(n, 3, G.size, G.size, generator=g) * 2 - 1
    return wplus, noise, real


def rel(a, b):
    """max |a - b| / max |b|"""
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def rel_l2(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


# ---- (1) split (non-fused) vs grouped (fused) modulated convolution, fp32 -----------------------

def test_split_modconv_equals_grouped_in_fp32_forward_and_gradients():
    G, _ = nets()
    wplus, noise, _ = inputs(G)
    results = {}
    for mode in ("reference", "fast"):
        G.set_execution(mode)
        G.zero_grad()
        w = wplus.clone().requires_grad_(True)
        img = G.synthesis(w, noise=noise)
        (img * torch.linspace(-1, 1, img.numel()).view_as(img)).sum().backward()
        grads = {k: p.grad.clone() for k, p in G.named_parameters() if p.grad is not None}
        results[mode] = (img.detach(), w.grad, grads)
    (img_g, gw_g, grads_g), (img_s, gw_s, grads_s) = results["reference"], results["fast"]
    assert img_g.abs().max() > 0.1
    assert (img_s - img_g).abs().max() < 1e-4
    assert rel(gw_s, gw_g) < 1e-4
    assert grads_s.keys() == grads_g.keys() and len(grads_g) > 20
    for k in grads_g:
        assert rel(grads_s[k], grads_g[k]) < 1e-4, k
    # the two executions really differ (else this test proves nothing): grouped runs N-group convolutions
    G.set_execution("reference")
    assert not G.convs[0].conv.split(torch.zeros(4, 1, 1, 1))
    G.set_execution("fast")
    assert G.convs[0].conv.split(torch.zeros(4, 1, 1, 1))


def test_fast_discriminator_equals_reference_in_fp32():
    _, D = nets()
    _, _, real = inputs(Generator(ARCH), n=8)
    fake = torch.rand_like(real) * 2 - 1
    out = {}
    for mode in ("reference", "fast"):
        D.set_execution(mode)
        D.zero_grad()
        x = torch.cat([real, fake]).requires_grad_(True)
        pred = D(x, batches=2) if mode == "fast" else torch.cat([D(x[:8]), D(x[8:])])
        d_logistic_loss(pred[:8], pred[8:]).backward()
        out[mode] = (pred.detach(), x.grad, {k: p.grad.clone() for k, p in D.named_parameters()})
    (p_r, gx_r, g_r), (p_f, gx_f, g_f) = out["reference"], out["fast"]
    assert (p_f - p_r).abs().max() < 1e-4 and p_r.abs().max() > 1e-3
    assert rel(gx_f, gx_r) < 1e-4
    for k in g_r:
        assert rel(g_f[k], g_r[k]) < 1e-4, k
    with pytest.raises(ValueError, match="equal batches"):
        D(real[:3], batches=2)


def test_regularisers_in_fp32_match_the_reference():
    """R1 and path length run in fp32 in every execution: the fast networks give the reference's
    values (and their double backward works through the split convolutions)."""
    G, D = nets()
    wplus, noise, real = inputs(G)
    vals = {}
    for mode in ("reference", "fast"):
        G.set_execution(mode)
        D.set_execution(mode)
        G.zero_grad()
        D.zero_grad()
        x = real.clone().requires_grad_(True)
        r1 = r1_penalty(D(x), x)
        r1.backward()
        w = wplus.clone().requires_grad_(True)
        img = G.synthesis(w, noise=noise)
        (gw,) = torch.autograd.grad((img * img.detach().sin()).sum(), w, create_graph=True)
        path = gw.pow(2).sum(2).mean(1).sqrt().mean()
        path.backward()
        vals[mode] = (r1.item(), path.item(), D.convs[0][0].weight.grad.clone(), G.convs[0].conv.weight.grad.clone())
    (r_r, p_r, gd_r, gg_r), (r_f, p_f, gd_f, gg_f) = vals["reference"], vals["fast"]
    assert r_r > 0 and abs(r_f - r_r) / r_r < 1e-4
    assert p_r > 0 and abs(p_f - p_r) / p_r < 1e-4
    assert rel(gd_f, gd_r) < 1e-4 and rel(gg_f, gg_r) < 1e-4


# ---- (2) the fast bf16 step vs the reference fp32 step --------------------------------------------

def one_step_outputs(ex: StepExecution, G, D, wplus, noise, real):
    """Images, both losses and every gradient of one G+D step's loss passes (no optimiser step)."""
    G.set_execution(ex.networks)
    D.set_execution(ex.networks)
    n = real.shape[0]
    G.zero_grad()
    D.zero_grad()
    with ex.autocast(real.device):
        with torch.no_grad():
            fake = G.synthesis(wplus, noise=noise)
        if ex.batched_d:
            pred = D(torch.cat([real, fake.float()]), batches=2)
            d_loss = d_logistic_loss(pred[:n], pred[n:])
        else:
            d_loss = d_logistic_loss(D(real), D(fake))
    d_loss.backward()
    d_grads = {k: p.grad.clone() for k, p in D.named_parameters()}
    D.zero_grad()
    with ex.autocast(real.device):
        img = G.synthesis(wplus, noise=noise)
        g_loss = g_nonsaturating_loss(D(img))
    g_loss.backward()
    g_grads = {k: p.grad.clone() for k, p in G.named_parameters() if p.grad is not None}
    return fake.float(), d_loss.item(), g_loss.item(), d_grads, g_grads


def flat(grads: dict, keys) -> torch.Tensor:
    return torch.cat([grads[k].float().flatten() for k in keys])


def test_fast_bf16_step_matches_the_reference_within_bf16_rounding():
    """bf16 activations (autocast, channels-last, hairlib's CPU kernels), fp32 weights, against the
    fp32 reference execution: images within 0.1 (in [-1, 1]: a few bf16 ulps after ~10 layers),
    losses within 1 %, gradients (all of G's, all of D's, as one vector each) with cosine
    similarity >= 0.98 and relative L2 error <= 0.25. bf16 keeps 8 bits of mantissa and a
    gradient sums many rounded terms; the same step with PyTorch's own ops in bf16 errs as much
    (checked: hairlib's kernels add at most half again to it)."""
    G, D = nets()
    wplus, noise, real = inputs(G, n=8)
    bf16 = StepExecution("fast", torch.bfloat16, True, True)
    ref = one_step_outputs(StepExecution.reference(), G, D, wplus, noise, real)
    fast = one_step_outputs(bf16, G, D, wplus, noise, real)
    with ops.use_impl("ref"):
        torch_bf16 = one_step_outputs(bf16, G, D, wplus, noise, real)
    assert fast[0].dtype == torch.float32  # the image (ToRGB and its skip) stays fp32
    assert (fast[0] - ref[0]).abs().max() < 0.1 and ref[0].abs().max() > 0.1
    assert abs(fast[1] - ref[1]) / abs(ref[1]) < 0.01
    assert abs(fast[2] - ref[2]) / abs(ref[2]) < 0.01
    for which in (3, 4):
        keys = list(ref[which])
        assert list(fast[which]) == keys
        a, b, t = flat(fast[which], keys), flat(ref[which], keys), flat(torch_bf16[which], keys)
        assert torch.nn.functional.cosine_similarity(a, b, 0) >= 0.98
        assert 1e-4 < rel_l2(a, b) <= 0.25  # bf16 really ran (not bit-identical), within bf16 rounding
        assert rel_l2(a, b) <= 1.5 * rel_l2(t, b)


def test_fast_step_trains_and_keeps_fp32_master_weights():
    G, D = nets()
    cfg = GANTrainConfig(arch=ARCH, batch=4, r1=1.0, d_reg_every=1, g_reg_every=1, path_regularize=2.0)
    ex = StepExecution("fast", torch.bfloat16, True, True)
    g_opt, d_opt = make_optimizers(G, D, cfg, ex)
    runner = GANStep(G, D, g_opt, d_opt, cfg, ex, torch.Generator().manual_seed(0), "cpu", G_ema=Generator(ARCH))
    before = G.convs[0].conv.weight.detach().clone()
    stats = {}
    _, _, real = inputs(G)
    runner.step(real, 0, stats)  # with R1 and path length (fp32, double backward)
    assert {"d", "g", "r1", "path"} <= set(stats) and all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert all(p.dtype == torch.float32 for p in list(G.parameters()) + list(D.parameters()))
    assert not torch.equal(before, G.convs[0].conv.weight)


# ---- (3) automatic choices ----------------------------------------------------------------------

def test_modconv_execution_is_chosen_by_mode_and_batch():
    G, _ = nets()
    conv = G.convs[0].conv
    x4, x1 = torch.zeros(4, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    G.train()
    assert conv.split(x4) and not conv.split(x1)  # training with a batch: split (StyleGAN2-ADA)
    G.eval()
    assert conv.split(x4)  # an optimisation through a frozen generator (inversion): split too
    with torch.no_grad():
        assert not conv.split(x4)  # inference: rosinality's grouped convolution, exactly
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert conv.split(x4)  # bf16 (training through a frozen G): split, channels-last
    with pytest.raises(ValueError, match="execution must be one of"):
        G.set_execution("turbo")
    # inference by default equals the reference execution bit for bit
    wplus, noise, _ = inputs(G)
    with torch.no_grad():
        auto = G.synthesis(wplus, noise=noise)
        G.set_execution("reference")
        assert torch.equal(auto, G.synthesis(wplus, noise=noise))


def test_bf16_only_where_the_cpu_has_amx(monkeypatch):
    from hairlib.ops import cpu

    monkeypatch.setattr(cpu, "has_amx_bf16", lambda: False)
    assert StepExecution.fast("cpu").dtype == torch.float32
    assert choose_execution(None, "cpu").networks == "fast"
    monkeypatch.setattr(cpu, "has_amx_bf16", lambda: True)
    assert StepExecution.fast("cpu").dtype == torch.bfloat16
    assert StepExecution.fast("cuda").dtype == torch.float32  # CUDA keeps fp32
    assert choose_execution("reference") == StepExecution.reference()
    with pytest.raises(ValueError, match="execution must be"):
        choose_execution("turbo")


def test_amx_detection_agrees_with_cpuinfo():
    from pathlib import Path

    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if ops.has_amx_bf16():
        assert "amx_bf16" in flags and "amx_tile" in flags


def test_train_gan_uses_the_fast_execution_by_default(tmp_path, monkeypatch):
    seen = []
    init = GANStep.__init__
    monkeypatch.setattr(GANStep, "__init__", lambda self, *a, **kw: seen.append(a[5]) or init(self, *a, **kw))
    cfg = GANTrainConfig(arch=StyleGAN2Config(size=8, style_dim=8, n_mlp=1, channel_multiplier=1, channel_max=8),
                         batch=2, steps=1)
    data = lambda n, g: torch.rand(n, 3, 8, 8, generator=g) * 2 - 1  # noqa: E731
    gan.train_gan(cfg, data, tmp_path / "a", progress=False)
    gan.train_gan(cfg, data, tmp_path / "b", progress=False, execution="reference")
    assert seen == [StepExecution.fast("cpu"), StepExecution.reference()]


def test_auto_ops_take_the_cpu_kernels_on_the_fast_path_only(monkeypatch):
    """fp32 NCHW (the reference execution, inference) never touches the kernels; bf16 and
    channels-last tensors (the fast execution) do."""
    from hairlib.ops import styled_act_cpu

    calls = []
    real = styled_act_cpu.styled_bias_act_cpu
    monkeypatch.setattr(styled_act_cpu, "styled_bias_act_cpu", lambda *a: calls.append(a[0].dtype) or real(*a))
    x = torch.randn(2, 4, 5, 5)
    ops.styled_bias_act(x, torch.zeros(4))
    ops.fused_leaky_relu(x, torch.zeros(4))
    assert calls == []
    if kernels_available():
        ops.styled_bias_act(x.bfloat16(), torch.zeros(4))
        ops.fused_leaky_relu(x.contiguous(memory_format=torch.channels_last), torch.zeros(4))
        assert calls == [torch.bfloat16, torch.float32]


# ---- hairlib's CPU kernels against the references -------------------------------------------------

needs_kernels = pytest.mark.skipif("not kernels_available()", reason="hairlib's CPU kernels could not be built")


@needs_kernels
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("with_d,with_noise,with_residual", [(True, True, False), (False, False, False),
                                                             (True, False, False), (False, False, True)])
def test_styled_bias_act_kernel(channels_last, with_d, with_noise, with_residual):
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 20, 5, 7, generator=g).contiguous(memory_format=fmt)  # 20 channels: 16 + a part
    b = torch.randn(20, generator=g).requires_grad_(True)
    d = (torch.rand(3, 20, generator=g) + 0.5).requires_grad_(True) if with_d else None
    noise = torch.randn(3, 1, 5, 7, generator=g) if with_noise else None
    nw = torch.randn(1, generator=g).requires_grad_(True) if with_noise else None
    res = torch.randn(3, 20, 5, 7, generator=g).contiguous(memory_format=fmt) if with_residual else None
    res = res.requires_grad_(True) if res is not None else None
    leaves = [t for t in (b, d, nw, res) if t is not None]
    gy = torch.randn(3, 20, 5, 7, generator=g)
    # fp32: the kernel computes exactly the reference's arithmetic
    xs = x.clone().requires_grad_(True)
    yk = ops.styled_bias_act(xs, b, d, noise, nw, residual=res, impl="cpu")
    yr = ops.styled_bias_act(xs, b, d, noise, nw, residual=res, impl="ref")
    assert torch.equal(yk, yr)
    assert yk.is_contiguous(memory_format=fmt)
    gk = torch.autograd.grad(yk, [xs] + leaves, gy)
    gr = torch.autograd.grad(yr, [xs] + leaves, gy)
    assert torch.equal(gk[0], gr[0])
    for a, r in zip(gk[1:], gr[1:]):
        assert rel(a, r) < 1e-5
    # bf16 in, bf16 out, float32 arithmetic: within bf16 rounding of the fp32 reference
    xb = x.bfloat16().requires_grad_(True)
    yb = ops.styled_bias_act(xb, b, d, noise, nw, impl="cpu")
    assert yb.dtype == torch.bfloat16
    assert rel(yb, ops.styled_bias_act(xb.float(), b, d, noise, nw, impl="ref")) < 1e-2
    # double backward (create_graph) differentiates the reference
    (gx,) = torch.autograd.grad(ops.styled_bias_act(xs, b, d, noise, nw, impl="cpu"), xs, gy, create_graph=True)
    (gx_r,) = torch.autograd.grad(ops.styled_bias_act(xs, b, d, noise, nw, impl="ref"), xs, gy, create_graph=True)
    params = [t for t in (b, d, nw) if t is not None]
    second = torch.autograd.grad(gx.square().sum(), params)
    second_r = torch.autograd.grad(gx_r.square().sum(), params)
    for a, r in zip(second, second_r):
        assert rel(a, r) < 1e-5


@needs_kernels
def test_modulate_kernel():
    g = torch.Generator().manual_seed(0)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 18, 3, 4, generator=g).contiguous(memory_format=fmt)
        xs = x.clone().requires_grad_(True)
        s = torch.randn(2, 18, generator=g).requires_grad_(True)
        yk, yr = ops.modulate(xs, s, impl="cpu"), ops.modulate(xs, s, impl="ref")
        assert torch.equal(yk, yr)
        gy = torch.randn(yk.shape, generator=g)
        gk, gr = torch.autograd.grad(yk, (xs, s), gy), torch.autograd.grad(yr, (xs, s), gy)
        assert torch.equal(gk[0], gr[0]) and rel(gk[1], gr[1]) < 1e-5


@needs_kernels
@pytest.mark.parametrize("up,down,pad,gain", [(1, 1, (1, 1), 4), (1, 1, (2, 2), 1), (1, 2, (1, 1), 1),
                                              (2, 1, (2, 1), 4), (2, 2, (1, 2), 1)])
def test_upfirdn2d_channels_last_kernel(up, down, pad, gain):
    """StyleGAN2's resamplings (blur after the transposed convolution, blur before the strided
    ones, the skip's upsampling), values and gradients, and an asymmetric separable filter."""
    g = torch.Generator().manual_seed(0)
    asymmetric = torch.outer(torch.tensor([1.0, 2.0, -0.5]), torch.tensor([0.5, 1.0, 3.0, -1.0]))
    for k in (make_kernel([1, 3, 3, 1]) * gain, asymmetric):
        x = torch.randn(2, 19, 9, 8, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        yk = ops.upfirdn2d(x, k, up=up, down=down, pad=pad, impl="cpu")
        yr = ops.upfirdn2d_ref(x, k, up=up, down=down, pad=pad)
        assert yk.shape == yr.shape and yk.is_contiguous(memory_format=torch.channels_last)
        assert (yk - yr).abs().max() < 1e-5 * yr.abs().max()
        gy = torch.randn(yr.shape, generator=g)
        (gk,), (gr,) = torch.autograd.grad(yk, x, gy), torch.autograd.grad(yr, x, gy)
        assert (gk - gr).abs().max() < 1e-5 * gr.abs().max()
        # double backward through the kernel (R1 on a channels-last input) differentiates the reference
        yk2 = ops.upfirdn2d(x, k, up=up, down=down, pad=pad, impl="cpu")
        (gx,) = torch.autograd.grad(yk2, x, gy, create_graph=True)
        assert gx.requires_grad


def test_non_separable_kernels_and_a_failed_build_fall_back_to_the_reference(monkeypatch):
    x = torch.randn(1, 2, 6, 6).contiguous(memory_format=torch.channels_last)
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # rank 2: not separable, the reference runs
    assert torch.equal(ops.upfirdn2d(x, k, pad=(1, 1), impl="cpu"), ops.upfirdn2d_ref(x, k, pad=(1, 1)))
    # without the kernels (no compiler, a failed build) "auto" runs the references, bf16 included
    monkeypatch.setattr(ops.cpu.KERNELS, "available", lambda required=False: False)
    xb = torch.randn(2, 4, 6, 6).bfloat16().contiguous(memory_format=torch.channels_last)
    assert torch.equal(ops.styled_bias_act(xb, torch.ones(4)), ops.styled_bias_act_ref(xb, torch.ones(4)))
    assert torch.equal(ops.modulate(xb, torch.ones(2, 4)), ops.modulate_ref(xb, torch.ones(2, 4)))
    k1 = make_kernel([1, 3, 3, 1])
    assert torch.equal(ops.upfirdn2d(xb, k1, pad=(1, 1)), ops.upfirdn2d_ref(xb, k1, pad=(1, 1)))


# ---- hairlib bench train -----------------------------------------------------------------------

def test_bench_train_quick_on_cpu(tmp_path, capsys):
    from hairlib import cli

    assert cli.main(["bench", "train", "--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "fast" in out and "x reference" in out and "timed:" in out
    rows = (tmp_path / "train-cpu.csv").read_text().splitlines()
    assert rows[0].startswith("device,arch,batch") and len(rows) >= 4
    from hairlib import bench

    import csv

    cells = [c for row in csv.reader(rows[1:]) for c in row]
    assert any(c == "fast" or c.startswith("fast,") for c in cells), rows  # "fast, bf16" with AMX, "fast, fp32" without
    assert bench.TRAIN_ARCH.size == 64 and bench.TRAIN_ARCH.channel_max == 128
