import pytest
import torch

from lightning_papers.losses import feature_loss, gram_matrix, pixel_loss, style_loss, total_variation


def loop_gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    g = torch.zeros(n, c, c, dtype=f.dtype)
    for b in range(n):
        for i in range(c):
            for j in range(c):
                s = 0.0
                for y in range(h):
                    for x in range(w):
                        s += float(f[b, i, y, x]) * float(f[b, j, y, x])
                g[b, i, j] = s / (c * h * w)
    return g


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 4, 1, 7), (3, 1, 2, 2)])
def test_gram_matrix_matches_an_explicit_loop(shape):
    torch.manual_seed(0)
    f = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(gram_matrix(f), loop_gram(f))


def test_gram_matrix_is_symmetric_and_float32_for_half_inputs():
    f = torch.randn(2, 5, 6, 6).to(torch.bfloat16)
    g = gram_matrix(f)
    assert g.dtype == torch.float32 and g.shape == (2, 5, 5)
    torch.testing.assert_close(g, g.transpose(1, 2))


def test_gram_matrix_stays_float32_under_autocast():
    # large activations: their float16 Gram sums would overflow (65504) before the division
    f = torch.full((1, 2, 16, 16), 20.0, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram_matrix(f)
    assert g.dtype == torch.float32
    torch.testing.assert_close(g, loop_gram(f.float()))


def test_gram_matrix_rejects_non_feature_maps():
    with pytest.raises(ValueError, match=r"Expected features of shape \(N, C, H, W\), got shape \(4, 5\)"):
        gram_matrix(torch.zeros(4, 5))


def test_style_loss_matches_a_hand_computation():
    torch.manual_seed(0)
    feats = {"a": torch.randn(2, 3, 4, 4, dtype=torch.float64), "b": torch.randn(2, 2, 3, 5, dtype=torch.float64)}
    targets = {"a": torch.randn(1, 3, 3, dtype=torch.float64), "b": torch.randn(2, 2, dtype=torch.float64)}
    weights = {"a": 0.5}
    expected = 0.0
    for name, w in (("a", 0.5), ("b", 1.0)):
        g = loop_gram(feats[name])
        t = targets[name].reshape(-1, *targets[name].shape[-2:])
        per_image = []
        for n in range(2):
            d = 0.0
            for i in range(g.shape[1]):
                for j in range(g.shape[2]):
                    d += (float(g[n, i, j]) - float(t[0, i, j])) ** 2
            per_image.append(d)
        expected += w * sum(per_image) / 2
    assert style_loss(feats, targets, weights).item() == pytest.approx(expected, rel=1e-10)


def test_style_loss_is_zero_at_the_target_and_uses_only_target_layers():
    torch.manual_seed(0)
    feats = {"a": torch.randn(1, 3, 4, 4), "b": torch.randn(1, 2, 4, 4)}
    assert style_loss(feats, {"a": gram_matrix(feats["a"])}).item() == 0.0


def test_style_loss_errors():
    feats = {"a": torch.randn(1, 3, 4, 4)}
    with pytest.raises(KeyError, match=r"Expected a feature map for style layer 'b', got layers \['a'\]"):
        style_loss(feats, {"b": torch.zeros(3, 3)})
    with pytest.raises(KeyError, match=r"Expected `weights` for layers of `target_grams` \['a'\], got \['c'\]"):
        style_loss(feats, {"a": torch.zeros(3, 3)}, {"c": 1.0})
    with pytest.raises(ValueError, match="Expected at least one style layer"):
        style_loss(feats, {})


@pytest.mark.parametrize("fn", [feature_loss, pixel_loss])
def test_feature_and_pixel_losses_are_squared_l2_over_chw_averaged_over_the_batch(fn):
    torch.manual_seed(0)
    a, b = torch.randn(3, 2, 4, 5, dtype=torch.float64), torch.randn(3, 2, 4, 5, dtype=torch.float64)
    expected = sum(float(((a[n] - b[n]) ** 2).sum()) / (2 * 4 * 5) for n in range(3)) / 3
    assert fn(a, b).item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=r"same shape, got \(3, 2, 4, 5\) and \(3, 2, 4, 4\)"):
        fn(a, b[..., :4])


@pytest.mark.parametrize("squared", [False, True])
def test_total_variation_matches_explicit_differences(squared):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    n, c, h, w = x.shape
    total = 0.0
    for b in range(n):
        for k in range(c):
            for i in range(h):
                for j in range(w):
                    for di, dj in ((1, 0), (0, 1)):
                        if i + di < h and j + dj < w:
                            d = float(x[b, k, i + di, j + dj] - x[b, k, i, j])
                            total += d * d if squared else abs(d)
    expected = total / (n * c * h * w)
    assert total_variation(x, squared=squared).item() == pytest.approx(expected, rel=1e-12)


def test_total_variation_of_a_constant_image_is_zero_and_rejects_bad_shapes():
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)).item() == 0.0
    with pytest.raises(ValueError, match=r"Expected images of shape \(N, C, H, W\), got shape \(3, 8, 8\)"):
        total_variation(torch.zeros(3, 8, 8))
