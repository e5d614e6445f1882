import numpy as np
import pytest
import torch
from landscape_helpers import small_convnet

from lightning_papers.landscape import ignored_keys, pca_directions


def _trajectory(model, steps=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = []
    for i in range(steps):
        state = {
            k: v + (0.1 / (i + 1)) * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
            for k, v in state.items()
        }
        out.append(state)
    return out


def _numpy_pca(model, states, center=True):
    skip = ignored_keys(model)
    keys = [k for k, _ in model.named_parameters() if k not in skip]
    flat = np.stack([np.concatenate([s[k].double().numpy().ravel() for k in keys]) for s in states])
    diffs = flat[:-1] - flat[-1]
    work = diffs - diffs.mean(0) if center else diffs
    _, s, vt = np.linalg.svd(work, full_matrices=False)
    return keys, diffs, s, vt


@pytest.mark.parametrize("center", [True, False])
def test_pca_matches_numpy_svd(center):
    model = small_convnet()
    states = _trajectory(model)
    pca = pca_directions(model, states, n_components=2, center=center)
    keys, diffs, s, vt = _numpy_pca(model, states, center)
    np.testing.assert_allclose(pca.explained_variance_ratio, (s**2 / (s**2).sum())[:2], rtol=1e-6)
    np.testing.assert_allclose(pca.singular_values, s[:2], rtol=1e-6)
    for j in range(2):
        v = np.concatenate([pca.directions[j].tensors[k].double().numpy().ravel() for k in keys])
        sign = np.sign(v @ vt[j])
        np.testing.assert_allclose(sign * v, vt[j], atol=1e-5)
        np.testing.assert_allclose(pca.path[:-1, j], diffs @ v, atol=1e-6)
        assert not pca.directions[j].tensors["1.weight"].any()  # BN ignored
    assert np.array_equal(pca.path[-1], [0.0, 0.0]) and pca.path.shape == (6, 2)
    assert torch.equal(pca.final_state["0.weight"], states[-1]["0.weight"])
    assert pca.to_dict()["directions"][0]["type"] == "pca"


def test_pca_from_checkpoint_files_with_lightning_prefix(tmp_path):
    model = small_convnet()
    states = _trajectory(model, steps=4, seed=1)
    paths = []
    for i, s in enumerate(states):
        p = tmp_path / f"epoch{i}.ckpt"
        torch.save({"epoch": i, "state_dict": {f"model.{k}": v for k, v in s.items()}}, p)
        paths.append(p)
    from_files = pca_directions(model, paths)
    in_memory = pca_directions(model, states)
    np.testing.assert_allclose(from_files.explained_variance_ratio, in_memory.explained_variance_ratio)
    np.testing.assert_allclose(from_files.path, in_memory.path)
    assert from_files.plot().lines


def test_pca_errors():
    model = small_convnet()
    states = _trajectory(model, steps=2)
    with pytest.raises(ValueError, match="Expected `trajectory` to hold at least"):
        pca_directions(model, states)
    with pytest.raises(ValueError, match="Expected `n_components`"):
        pca_directions(model, states, n_components=0)
    with pytest.raises(ValueError, match="Expected every checkpoint to hold"):
        pca_directions(model, [{}, {}, {}])
    with pytest.raises(ValueError, match="Expected a state dict or a checkpoint path"):
        pca_directions(model, [1, 2, 3])
    same = [states[0]] * 4
    with pytest.raises(ValueError, match="degenerate trajectory"):
        pca_directions(model, same)
