import copy
import pickle

import pytest
import torch
from torch import nn

from lightning_papers.models import ResidualBlock, SuperResolutionNet, TransformerNet


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def transformer_params(norm: str) -> int:
    """Johnson et al. supplementary Table 1, counted by hand: affine norms have 2C parameters, and a conv
    followed by a norm has no bias (with ``norm="none"`` every conv has one)."""
    has_norm = norm != "none"
    nrm = (lambda c: 2 * c) if has_norm else (lambda c: 0)
    b = not has_norm
    total = conv(3, 32, 9, b) + nrm(32) + conv(32, 64, 3, b) + nrm(64) + conv(64, 128, 3, b) + nrm(128)
    total += 5 * 2 * (conv(128, 128, 3, b) + nrm(128))
    total += conv(128, 64, 3, b) + nrm(64) + conv(64, 32, 3, b) + nrm(32)
    return total + conv(32, 3, 9, True)


def sr_params(factor: int, norm: str) -> int:
    """Johnson et al. supplementary Table 2: 9x9 conv 64, 4 residual blocks, log2(factor) upsampling convs."""
    has_norm = norm != "none"
    nrm = (lambda c: 2 * c) if has_norm else (lambda c: 0)
    b = not has_norm
    stages = {4: 2, 8: 3}[factor]
    total = conv(3, 64, 9, b) + nrm(64) + 4 * 2 * (conv(64, 64, 3, b) + nrm(64))
    total += stages * (conv(64, 64, 3, b) + nrm(64))
    return total + conv(64, 3, 9, True)


def test_hand_counts_are_the_known_numbers():
    # Cross-check of the formula itself: 1,677,635 for the default transformer network.
    assert transformer_params("instance") == 1_677_635
    assert sr_params(4, "batch") == 401_155


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
@pytest.mark.parametrize("upsample", ["resize_conv", "transposed"])
def test_transformer_parameter_count(norm, upsample):
    assert n_params(TransformerNet(norm=norm, upsample=upsample)) == transformer_params(norm)


@pytest.mark.parametrize("factor", [4, 8])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_super_resolution_parameter_count(factor, norm):
    assert n_params(SuperResolutionNet(factor, norm=norm)) == sr_params(factor, norm)


def conv_trace(net: nn.Module, x: torch.Tensor) -> list[tuple]:
    """(kind, in, out, kernel, stride, output H) of every conv, in forward order."""
    records = []

    def hook(module, inputs, output):
        kind = "convT" if isinstance(module, nn.ConvTranspose2d) else "conv"
        records.append((kind, module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0],
                        output.shape[-1]))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return records


@pytest.mark.parametrize("upsample", ["resize_conv", "transposed"])
def test_transformer_layers_follow_the_paper(upsample):
    net = TransformerNet(upsample=upsample).eval()
    up = ("convT", 2) if upsample == "transposed" else ("conv", 1)
    expected = [
        ("conv", 3, 32, 9, 1, 64),
        ("conv", 32, 64, 3, 2, 32),
        ("conv", 64, 128, 3, 2, 16),
        *[("conv", 128, 128, 3, 1, 16)] * 10,  # 5 residual blocks x two 3x3 convs
        (up[0], 128, 64, 3, up[1], 32),
        (up[0], 64, 32, 3, up[1], 64),
        ("conv", 32, 3, 9, 1, 64),
    ]
    assert conv_trace(net, torch.rand(1, 3, 64, 64)) == expected
    assert sum(isinstance(m, ResidualBlock) for m in net.modules()) == 5
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules()) == 15  # every conv but the last
    assert sum(isinstance(m, nn.Upsample) for m in net.modules()) == (2 if upsample == "resize_conv" else 0)


@pytest.mark.parametrize("net", [TransformerNet(), SuperResolutionNet(4), SuperResolutionNet(8)],
                         ids=["transformer", "sr4", "sr8"])
def test_every_conv_is_reflection_padded_to_keep_the_size(net):
    leaves = [m for m in net.modules() if not list(m.children())]
    for i, m in enumerate(leaves):
        if isinstance(m, nn.Conv2d):
            assert m.padding == (0, 0)
            assert isinstance(leaves[i - 1], nn.ReflectionPad2d)
            assert leaves[i - 1].padding == (m.kernel_size[0] // 2,) * 4


@pytest.mark.parametrize("factor", [4, 8])
def test_super_resolution_layers_follow_the_paper(factor):
    net = SuperResolutionNet(factor).eval()
    stages = factor.bit_length() - 1
    sizes = [10 * 2 ** (i + 1) for i in range(stages)]
    expected = [
        ("conv", 3, 64, 9, 1, 10),
        *[("conv", 64, 64, 3, 1, 10)] * 8,  # 4 residual blocks
        *[("conv", 64, 64, 3, 1, s) for s in sizes],
        ("conv", 64, 3, 9, 1, 10 * factor),
    ]
    assert conv_trace(net, torch.rand(1, 3, 10, 10)) == expected
    assert sum(isinstance(m, ResidualBlock) for m in net.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 1 + 8 + stages


SIZES = [(33, 47), (1, 1), (2, 3), (5, 9), (17, 4), (64, 64)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("norm", "upsample"), [("instance", "resize_conv"), ("batch", "transposed")])
def test_transformer_output_matches_any_input_size(size, norm, upsample):
    torch.manual_seed(0)
    net = TransformerNet(norm=norm, upsample=upsample)  # train mode: batch statistics even for one image
    for n in (1, 2):
        y = net(torch.rand(n, 3, *size))
        assert y.shape == (n, 3, *size)
        assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("factor", [4, 8])
@pytest.mark.parametrize("size", [(1, 1), (7, 9), (16, 11)])
def test_super_resolution_output_is_factor_times_input(factor, size):
    y = SuperResolutionNet(factor).eval()(torch.rand(2, 3, *size))
    assert y.shape == (2, 3, factor * size[0], factor * size[1])
    assert y.min() >= 0 and y.max() <= 1


def test_unpadded_sizes_go_through_without_cropping():
    # A size divisible by 4 is not padded: the net equals its layers applied one after the other.
    torch.manual_seed(0)
    net = TransformerNet().eval()
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        ref = torch.sigmoid(net.head(net.up(net.residuals(net.down(x)))))
        assert torch.equal(net(x), ref)


def test_output_activations():
    torch.manual_seed(0)
    raw = TransformerNet(output="none").eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        z = raw(x)
        for output, fn in (("sigmoid", torch.sigmoid), ("scaled_tanh", lambda t: (torch.tanh(t) + 1) / 2)):
            net = TransformerNet(output=output).eval()
            net.load_state_dict(raw.state_dict())
            torch.testing.assert_close(net(x), fn(z))


def test_networks_pickle_and_deepcopy():
    net = TransformerNet()
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert n_params(clone) == n_params(net)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "layer"}, r"Expected `norm` to be one of \('instance', 'batch', 'none'\), got 'layer'"),
        ({"upsample": "pixel_shuffle"}, r"Expected `upsample` to be one of .*, got 'pixel_shuffle'"),
        ({"output": "tanh"}, r"Expected `output` to be one of .*'scaled_tanh'.*, got 'tanh'"),
    ],
)
def test_transformer_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerNet(**kwargs)
    with pytest.raises(ValueError, match=match):
        SuperResolutionNet(4, **kwargs)


@pytest.mark.parametrize("factor", [2, 3, 16, True, "4"])
def test_super_resolution_rejects_bad_factor(factor):
    with pytest.raises(ValueError, match=rf"Expected `factor` to be one of \(4, 8\), got {factor!r}"):
        SuperResolutionNet(factor)


def test_networks_reject_non_image_input():
    with pytest.raises(ValueError, match=r"Expected images of shape \(N, C, H, W\), got shape \(3, 8, 8\)"):
        TransformerNet()(torch.rand(3, 8, 8))
