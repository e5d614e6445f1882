import copy
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_papers.models import BasicBlock, PadShortcut, ResNetCIFAR, get_model, list_models

# He et al. Table 6 / DESIGN.md, option A, 10 classes.
PARAMS = {
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(("name", "expected"), PARAMS.items())
def test_parameter_counts_match_the_paper(name, expected):
    assert n_params(get_model(name, num_classes=10)) == expected


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_maps_images_to_logits(name):
    # Train mode: with fresh BatchNorm statistics an untrained ResNet-1202 in eval mode doubles its
    # activation scale block after block and overflows fp32; batch statistics keep it finite.
    model = get_model(name, num_classes=7).train()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_registry_names_the_paper_variants():
    expected = {
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
        "resnet20_noshort", "resnet56_noshort", "resnet110_noshort",
        "resnet56_w2", "resnet56_w4", "resnet56_w8",
    }
    assert set(list_models()) == expected


def test_builders_forward_keyword_arguments():
    net = get_model("resnet20", num_classes=3, shortcut="B", wide=2, in_channels=1)
    assert (net.num_classes, net.shortcut, net.wide, net.conv1.in_channels, net.depth) == (3, "B", 2, 1, 20)
    assert get_model("resnet56_w2", in_channels=1).conv1.weight.shape == (32, 1, 3, 3)
    assert get_model("resnet20_noshort", wide=2).shortcut == "none"
    with pytest.raises(TypeError, match="shortcut"):  # fixed by the builder's name
        get_model("resnet20_noshort", shortcut="A")

def test_bad_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet57'.*resnet20.*resnet56_w8"):
        get_model("resnet57")


def test_option_a_shortcut_has_no_parameters_and_pads_zeros():
    sc = PadShortcut(16, 32, stride=2)
    assert n_params(sc) == 0
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    # Explicit slow reference: subsample by 2, then 8 zero channels before and 8 after.
    ref = torch.zeros(2, 32, 4, 4)
    ref[:, 8:24] = x[:, :, ::2, ::2]
    assert torch.equal(y, ref)
    shortcuts = [m for m in get_model("resnet56").modules() if isinstance(m, PadShortcut)]
    assert len(shortcuts) == 2  # one per stage transition


def _explicit_block(block: BasicBlock, x: torch.Tensor, shortcut: torch.Tensor | None) -> torch.Tensor:
    out = F.relu(F.batch_norm(F.conv2d(x, block.conv1.weight, stride=block.conv1.stride, padding=1),
                              block.bn1.running_mean, block.bn1.running_var, block.bn1.weight, block.bn1.bias))
    out = F.batch_norm(F.conv2d(out, block.conv2.weight, padding=1),
                       block.bn2.running_mean, block.bn2.running_var, block.bn2.weight, block.bn2.bias)
    return F.relu(out if shortcut is None else out + shortcut)


@pytest.mark.parametrize("shortcut", ["A", "B", "none"])
def test_block_matches_an_explicit_computation(shortcut):
    torch.manual_seed(0)
    block = BasicBlock(16, 32, stride=2, shortcut=shortcut).eval()
    for bn in (m for m in block.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 16, 8, 8)
    if shortcut == "A":
        skip = torch.zeros(3, 32, 4, 4)
        skip[:, 8:24] = x[:, :, ::2, ::2]
    elif shortcut == "B":
        conv, bn = block.shortcut[0], block.shortcut[1]
        skip = F.batch_norm(F.conv2d(x, conv.weight, stride=2), bn.running_mean, bn.running_var, bn.weight, bn.bias)
    else:
        skip = None
    with torch.no_grad():
        assert torch.allclose(block(x), _explicit_block(block, x, skip), atol=1e-5)


def test_option_b_adds_projection_parameters():
    a, b = get_model("resnet20"), get_model("resnet20", shortcut="B")
    # Two projections: 16->32 and 32->64 (1x1 conv, no bias) each with a BatchNorm (2 params per channel).
    assert n_params(b) - n_params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_noshort_has_the_same_parameters_but_no_skip():
    plain, short = get_model("resnet56_noshort"), get_model("resnet56")
    assert n_params(plain) == n_params(short)
    assert all(not b.use_shortcut for b in plain.modules() if isinstance(b, BasicBlock))
    assert not any(isinstance(m, PadShortcut) for m in plain.modules())


@pytest.mark.parametrize(("name", "k"), [("resnet56_w2", 2), ("resnet56_w4", 4), ("resnet56_w8", 8)])
def test_wide_variants_multiply_every_width(name, k):
    model = get_model(name)
    assert model.conv1.out_channels == 16 * k
    assert model.layer2[0].conv1.out_channels == 32 * k
    assert model.fc.in_features == 64 * k
    assert ResNetCIFAR(9, wide=k).fc.in_features == model.fc.in_features


def test_models_pickle_deepcopy_and_script():
    model = get_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(pickle.loads(pickle.dumps(model))(x), ref)
        assert torch.equal(copy.deepcopy(model)(x), ref)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript is deprecated in new torch releases
            scripted = torch.jit.script(model)
        assert torch.allclose(scripted(x), ref, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"blocks_per_stage": 0}, r"Expected `blocks_per_stage` to be a positive integer, got 0"),
        ({"blocks_per_stage": 3, "num_classes": 0}, r"Expected `num_classes` to be a positive integer, got 0"),
        ({"blocks_per_stage": 3, "wide": 0}, r"Expected `wide` to be a positive integer, got 0"),
        ({"blocks_per_stage": 3, "shortcut": "C"}, r"Expected `shortcut` to be one of \('A', 'B', 'none'\), got 'C'"),
    ],
)
def test_bad_arguments_say_what_was_expected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNetCIFAR(**kwargs)


def test_pad_shortcut_cannot_shrink_channels():
    with pytest.raises(ValueError, match=r"Expected `out_channels` >= `in_channels`.*got 8 < 16"):
        PadShortcut(16, 8, stride=1)
