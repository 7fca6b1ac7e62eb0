"""KID, PSNR, SSIM: known values and the right orderings."""
import math

import torch

from hairlib.metrics import kid, psnr, ssim


def test_kid_is_near_zero_for_one_distribution_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(600, 16, generator=g), torch.randn(600, 16, generator=g)
    same, _ = kid(a, b, subsets=10, subset_size=300)
    shifted, _ = kid(a, b + 0.5, subsets=10, subset_size=300)
    far, _ = kid(a, b + 1.5, subsets=10, subset_size=300)
    assert abs(same) < 0.02 < shifted < far


def test_psnr_matches_formula_and_mask():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[0] += 0.2  # MSE 0.04 everywhere -> 10 log10(4 / 0.04) = 20 dB
    b[1, :, :4] += 1.0  # error only in the top half
    p = psnr(a, b)
    assert math.isclose(p[0].item(), 20.0, rel_tol=1e-5)
    bottom = torch.zeros(2, 8, 8)
    bottom[:, 4:] = 1
    assert psnr(a, b, mask=bottom)[1] > 100  # no error where the mask counts


def test_ssim_identity_and_degradation():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert torch.allclose(ssim(a, a), torch.ones(2), atol=1e-6)
    noisy = (a + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    assert (ssim(a, noisy) < 0.9).all()
