import urllib.error
import warnings

import pytest
import torch
import torchvision
from torch import nn

from lightning_papers.losses import VGG16_LAYERS, PerceptualLoss, VGGFeatures, gram_matrix, vgg16_checkpoint_path
from lightning_papers.losses import perceptual as perceptual_module

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# Indices of relu1_2, relu2_2, relu3_3, relu4_3 in torchvision's vgg16().features.
TORCHVISION_TAPS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}


def random_vgg(**kwargs) -> VGGFeatures:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return VGGFeatures(weights="random", **kwargs)


@pytest.fixture(scope="module")
def reference_vgg16():
    """torchvision's VGG-16 with random weights: (its features, its full state dict)."""
    torch.manual_seed(0)
    # Built on the meta device and materialised without initialising the 120M classifier weights (3 s);
    # the conv layers, the part VGGFeatures reads, get real random weights.
    with torch.device("meta"):
        model = torchvision.models.vgg16(weights=None)
    model = model.to_empty(device="cpu").eval()
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
    return model.features, model.state_dict()


@pytest.fixture(scope="module")
def full_state_file(reference_vgg16, tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16_full.pth"
    torch.save(reference_vgg16[1], path)
    return path


def reference_taps(features: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out, h = {}, (x - MEAN) / STD
    wanted = {i: name for name, i in TORCHVISION_TAPS.items()}
    for i, module in enumerate(features[: max(wanted) + 1]):
        h = module(h.clone())  # torchvision's ReLUs work in place
        if i in wanted:
            out[wanted[i]] = h.clone()
    return out


def assert_same_features(vgg: VGGFeatures, features: nn.Sequential) -> None:
    torch.manual_seed(1)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        got, ref = vgg(x), reference_taps(features, x)
    assert list(got) == list(vgg.layers)
    for name in vgg.layers:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-5)


def test_layer_names_are_vgg16s_relus():
    assert VGG16_LAYERS == ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3",
                            "relu4_1", "relu4_2", "relu4_3", "relu5_1", "relu5_2", "relu5_3")


def test_random_weights_warn():
    with pytest.warns(UserWarning, match=r'weights="random".*for testing only'):
        VGGFeatures(weights="random")


def test_taps_have_the_paper_shapes_and_the_net_is_truncated():
    vgg = random_vgg()
    feats = vgg(torch.rand(2, 3, 32, 48))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "relu1_2": (2, 64, 32, 48),
        "relu2_2": (2, 128, 16, 24),
        "relu3_3": (2, 256, 8, 12),
        "relu4_3": (2, 512, 4, 6),
    }
    assert len(vgg.features) == TORCHVISION_TAPS["relu4_3"] + 1
    assert len(random_vgg(layers=("relu2_2",)).features) == TORCHVISION_TAPS["relu2_2"] + 1


def test_a_subset_of_layers_equals_the_full_pass_and_stops_at_its_deepest():
    vgg = random_vgg()
    x = torch.rand(2, 3, 32, 32)
    calls = []
    for i, module in enumerate(vgg.features):
        module.register_forward_hook(lambda m, inp, out, i=i: calls.append(i))
    full = vgg(x)
    assert calls == list(range(len(vgg.features)))
    calls.clear()
    part = vgg(x, layers=("relu1_2", "relu2_2"))
    assert list(part) == ["relu1_2", "relu2_2"] and calls == list(range(TORCHVISION_TAPS["relu2_2"] + 1))
    for name in part:
        assert torch.equal(part[name], full[name])
    for bad in (("relu5_3",), ("relu3_1",), ()):
        with pytest.raises(ValueError, match=r"Expected `layers` to be a non-empty subset of the taps \("):
            vgg(x, layers=bad)


def test_perceptual_loss_runs_the_content_target_only_to_the_content_layer():
    vgg = random_vgg()
    loss_fn = PerceptualLoss(vgg)
    loss_fn.set_style(torch.rand(3, 16, 16))
    depths = []
    vgg.features[0].register_forward_hook(lambda m, inp, out: depths.append(0))
    vgg.features[-1].register_forward_hook(lambda m, inp, out: depths.append(len(vgg.features) - 1))
    loss_fn(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    # two passes start (output, content); only the output's reaches relu4_3
    assert depths.count(0) == 2 and depths.count(len(vgg.features) - 1) == 1


def test_frozen_and_stays_in_eval_mode_under_a_training_parent():
    vgg = random_vgg()
    parent = nn.ModuleDict({"net": nn.Conv2d(3, 3, 1), "vgg": vgg})
    parent.train()
    assert parent.training and parent["net"].training
    assert not vgg.training and not any(m.training for m in vgg.modules())
    assert not any(p.requires_grad for p in vgg.parameters())
    assert all(p.requires_grad for p in parent["net"].parameters())


def test_input_is_not_modified_and_gradients_reach_it():
    vgg = random_vgg(layers=("relu2_2",))
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    before = x.detach().clone()
    vgg(x)["relu2_2"].pow(2).sum().backward()
    assert torch.equal(x.detach(), before)
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_full_state_dict_file_gives_torchvisions_features(reference_vgg16, full_state_file):
    vgg = VGGFeatures(weights=str(full_state_file))
    assert_same_features(vgg, reference_vgg16[0])


@pytest.mark.parametrize("prefix", ["", "features."])
def test_features_only_state_dict_file(reference_vgg16, tmp_path, prefix):
    features = reference_vgg16[0]
    path = tmp_path / "features.pth"
    torch.save({prefix + k: v for k, v in features.state_dict().items()}, path)
    assert_same_features(VGGFeatures(weights=path, layers=("relu1_2", "relu3_3")), features)


def test_imagenet_weights_come_from_the_hub_cache(reference_vgg16, full_state_file, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    path = vgg16_checkpoint_path()
    assert path == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    path.parent.mkdir(parents=True)
    path.symlink_to(full_state_file)
    assert_same_features(VGGFeatures(weights="imagenet", download=False), reference_vgg16[0])


def test_missing_imagenet_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    expected = str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth")
    def no_network(url, *args, **kwargs):  # the constructor must not even try
        raise AssertionError(f"VGGFeatures tried to download {url}")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    with pytest.raises(RuntimeError, match=r"download=False") as info:
        VGGFeatures(weights="imagenet")  # download is off by default (STYLE rule 13)
    message = str(info.value)
    assert expected in message and 'weights="path/to/file.pth"' in message


def test_a_failed_download_becomes_the_same_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(RuntimeError, match=r"download failed: URLError.*no network.*vgg16-397923af\.pth"):
        VGGFeatures(weights="imagenet", download=True, timeout=1)
    assert not (tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth").exists()
    assert not list((tmp_path / "hub" / "checkpoints").glob("*.partial"))


@pytest.mark.parametrize("weights", [None, "IMAGENET1K_V1", "imagenet1k", 3])
def test_bad_weights_value_is_named(weights):
    with pytest.raises(ValueError, match=rf"Expected `weights` to be one of .*got {weights!r}"):
        VGGFeatures(weights=weights)


def test_bad_layers_are_named():
    with pytest.raises(ValueError, match=r"Expected `layers` from .*got unknown \['relu6_1'\]"):
        VGGFeatures(weights="random", layers=("relu1_2", "relu6_1"))
    with pytest.raises(ValueError, match=r"Expected at least one layer name"):
        VGGFeatures(weights="random", layers=())


def test_missing_and_wrong_weight_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.pth.* does not exist"):
        VGGFeatures(weights=str(tmp_path / "nothere.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=r"Could not read a state dict from .*garbage\.pth"):
        VGGFeatures(weights=garbage)
    other = tmp_path / "other.pth"
    torch.save(nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(RuntimeError, match=r"Expected a VGG-16 state dict .*other\.pth.*lacks \['0\.weight'"):
        VGGFeatures(weights=other)
    shapes = tmp_path / "vgg19ish.pth"
    state = random_vgg(layers=("relu1_2",)).features.state_dict()
    state["0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(state, shapes)
    with pytest.raises(RuntimeError, match=r"Expected VGG-16 shapes .*0\.weight: \(64, 1, 3, 3\) instead of"):
        VGGFeatures(weights=shapes, layers=("relu1_2",))


def test_non_image_input_is_rejected():
    with pytest.raises(ValueError, match=r"Expected RGB images of shape \(N, 3, H, W\).*\(1, 1, 8, 8\)"):
        random_vgg(layers=("relu1_1",))(torch.rand(1, 1, 8, 8))


def test_perceptual_loss_combines_the_terms():
    torch.manual_seed(0)
    vgg = random_vgg()
    loss_fn = PerceptualLoss(vgg, content_weight=2.0, style_weight=3.0, tv_weight=0.5)
    style, content, output = torch.rand(3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with pytest.raises(RuntimeError, match="call `set_style"):
        loss_fn(output, content)
    loss_fn.set_style(style)
    terms = loss_fn(output, content)
    with torch.no_grad():
        fo, fc, fs = vgg(output), vgg(content), vgg(style[None])
    content_term = ((fo["relu2_2"] - fc["relu2_2"]) ** 2).mean()
    style_term = sum(((gram_matrix(fo[k]) - gram_matrix(fs[k])) ** 2).sum(dim=(1, 2)).mean() / vgg.channels(k) ** 2
                     for k in vgg.layers)
    tv = ((output[:, :, 1:] - output[:, :, :-1]).abs().sum() + (output[..., 1:] - output[..., :-1]).abs().sum())
    tv = tv / output.numel()
    torch.testing.assert_close(terms["content"], 2.0 * content_term)
    torch.testing.assert_close(terms["style"], 3.0 * style_term)
    torch.testing.assert_close(terms["tv"], 0.5 * tv)
    torch.testing.assert_close(terms["loss"], terms["content"] + terms["style"] + terms["tv"])
    # The style targets (and the loss network) travel with the state dict.
    fresh = PerceptualLoss(random_vgg(), content_weight=2.0, style_weight=3.0, tv_weight=0.5)
    fresh.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(fresh(output, content)["loss"], terms["loss"])


def test_perceptual_loss_errors():
    vgg = random_vgg(layers=("relu2_2",))
    with pytest.raises(ValueError, match=r"Expected `vgg` to tap \['relu1_2'"):
        PerceptualLoss(vgg)
    with pytest.raises(ValueError, match=r"Expected `tv_weight` to be a non-negative finite number, got -1"):
        PerceptualLoss(vgg, style_layers=("relu2_2",), tv_weight=-1)
    with pytest.raises(ValueError, match=r"Expected `style_layer_weights` for layers of .*, got \['relu1_2'\]"):
        PerceptualLoss(vgg, style_layers=("relu2_2",), style_layer_weights={"relu1_2": 1.0})
    loss_fn = PerceptualLoss(vgg, style_layers=("relu2_2",))
    with pytest.raises(ValueError, match=r"Expected one style image.*\(2, 3, 8, 8\)"):
        loss_fn.set_style(torch.rand(2, 3, 8, 8))


def _served_checkpoint(tmp_path, state, name_hash=None):
    """A checkpoint at a file:// URL named as torchvision names its files (``vgg16-<sha256 prefix>.pth``), so that
    torch.hub's downloader fetches it without a network; ``name_hash`` puts another prefix in the name."""
    import hashlib

    src = tmp_path / "served.pth"
    torch.save(state, src)
    prefix = name_hash or hashlib.sha256(src.read_bytes()).hexdigest()[:8]
    served = tmp_path / "server" / f"vgg16-{prefix}.pth"
    served.parent.mkdir()
    src.rename(served)
    return served


def test_the_download_goes_through_torch_hub_and_checks_the_hash(reference_vgg16, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    served = _served_checkpoint(tmp_path, reference_vgg16[0].state_dict())
    monkeypatch.setattr(perceptual_module, "_imagenet_url", lambda: served.as_uri())
    path = perceptual_module.fetch_vgg16_weights(download=True, timeout=5)
    assert path == tmp_path / "hub" / "checkpoints" / served.name
    assert path.read_bytes() == served.read_bytes()
    assert_same_features(VGGFeatures(weights="imagenet"), reference_vgg16[0])  # now from the cache


def test_a_download_whose_hash_differs_is_refused_and_not_kept(reference_vgg16, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    served = _served_checkpoint(tmp_path, reference_vgg16[0].state_dict(), name_hash="00000000")
    monkeypatch.setattr(perceptual_module, "_imagenet_url", lambda: served.as_uri())
    with pytest.raises(RuntimeError, match=r"download failed: RuntimeError: invalid hash value"):
        perceptual_module.fetch_vgg16_weights(download=True, timeout=5)
    assert not list((tmp_path / "hub" / "checkpoints").iterdir())
