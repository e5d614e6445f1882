"""An evaluation copy of a model with BatchNorm folded into the convolutions before it, for fast surfaces.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
evaluate ``L(theta + a d1 + b d2)`` with the normalisation parameters unperturbed (their ``biasbn`` default,
ours too) and, for ``kind="weights"``, the centre's running statistics. In eval mode a BatchNorm after a
convolution is then a fixed per-channel affine map ``y = s (conv(x; W) + c - mu) + beta`` with
``s = gamma / sqrt(var + eps)``, so the pair equals one convolution with weight ``s W`` and bias
``s (c - mu) + beta``. The perturbation stays linear: ``s (W + a dW + b dW')`` is ``s W + a (s dW) + b (s dW')``,
so the in-place foreach updates of :func:`~lightning_papers.landscape.surface` act on the folded weights with
directions pre-scaled the same way, and every BatchNorm kernel disappears from the per-point passes. (This is
the standard inference-time conv-BN fusion; scaling the directions along is what makes it valid for a surface.)

Only pairs where the fold is exact are folded: a ``Conv1d/2d/3d`` whose output goes to one BatchNorm and
nowhere else (found by tracing the model with ``torch.fx``), a BatchNorm with running statistics, each module
called once, and no non-zero direction entry on the BatchNorm. Everything else stays as it is. A model that
``torch.fx`` cannot trace is evaluated unfolded (the caller is told why).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn
from torch.nn.utils import parametrize

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class FoldedModel:
    """A deep copy of a model, in eval mode, with some conv-BN pairs folded into single convolutions.

    Attributes:
        model: the copy (the original model is untouched).
        pairs: ``{conv name: batchnorm name}`` of the folded pairs (module names in the original model).
        scales: ``{conv name: s}``, the per-output-channel factor ``gamma / sqrt(var + eps)`` (float64, on the
            model's device) that maps the original conv's weight, bias and their directions onto the folded ones.
        reason: why nothing was folded, when nothing was (``""`` otherwise).
    """

    model: nn.Module
    pairs: dict[str, str] = field(default_factory=dict)
    scales: dict[str, torch.Tensor] = field(default_factory=dict)
    reason: str = ""

    def scale_of(self, key: str) -> torch.Tensor | None:
        """The factor that maps the original tensor ``key`` (e.g. ``"layer1.0.conv1.weight"``) and its
        directions onto the folded model's tensor of the same name, shaped to broadcast; ``None`` when ``key``
        is not part of a folded convolution."""
        module, _, leaf = key.rpartition(".")
        s = self.scales.get(module)
        if s is None or leaf not in ("weight", "bias"):
            return None
        weight = cast(torch.Tensor, self.model.get_submodule(module).weight)
        return s.view(-1, *([1] * (weight.dim() - 1))) if leaf == "weight" else s


def _foldable_pairs(model: nn.Module) -> tuple[list[tuple[str, str]], str]:
    """``[(conv name, bn name)]`` whose conv output feeds that BatchNorm only; ``""`` or why tracing failed."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as err:  # data-dependent control flow, unsupported Python, ...
        lines = str(err).strip().splitlines()
        return [], f"torch.fx could not trace the model ({type(err).__name__}: {lines[0][:200] if lines else ''})"
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        if not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        src = node.args[0]
        if src.op != "call_module" or type(modules.get(src.target)) not in _CONVS or len(src.users) != 1:
            continue
        if calls[src.target] == 1 and calls[node.target] == 1:
            pairs.append((str(src.target), str(node.target)))
    return pairs, ""


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def fold_batchnorm(model: nn.Module, keep: Sequence[str] = ()) -> FoldedModel:
    """A deep copy of ``model`` in eval mode with every exactly-foldable conv-BN pair folded.

    Args:
        model: any module; it is not modified.
        keep: tensor names (as in ``model.named_parameters()``/``state_dict()``) that will be perturbed: a
            BatchNorm owning one of them is not folded (its affine map would change with the point).

    Returns:
        a :class:`FoldedModel`; the copy computes the same function as ``model.eval()`` up to float rounding.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> folded = fold_batchnorm(net)
        >>> folded.pairs, type(folded.model[1]).__name__
        ({'0': '1'}, 'Identity')
    """
    work = copy.deepcopy(model).eval()
    pairs, reason = _foldable_pairs(work)
    keep_modules = {k.rpartition(".")[0] for k in keep}
    uses = Counter(id(p) for _, p in work.named_parameters(remove_duplicate=False))
    folded = FoldedModel(work, reason=reason)
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv = cast(nn.modules.conv._ConvNd, work.get_submodule(conv_name))
            bn = cast(nn.modules.batchnorm._BatchNorm, work.get_submodule(bn_name))
            if (bn_name in keep_modules or bn.running_mean is None or bn.running_var is None
                    or parametrize.is_parametrized(conv) or parametrize.is_parametrized(bn)
                    or conv.weight.shape[0] != bn.running_mean.shape[0]
                    or any(uses[id(p)] > 1 for p in (conv.weight, conv.bias) if p is not None)):
                continue
            var = bn.running_var.double()
            s = torch.rsqrt(var + bn.eps)
            if bn.weight is not None:
                s = s * bn.weight.double()
            c = conv.bias.double() if conv.bias is not None else torch.zeros_like(s)
            bias = s * (c - bn.running_mean.double())
            if bn.bias is not None:
                bias = bias + bn.bias.double()
            w = conv.weight
            w.copy_((w.double() * s.view(-1, *([1] * (w.dim() - 1)))).to(w.dtype))
            if conv.bias is None:
                conv.bias = nn.Parameter(bias.to(w.dtype), requires_grad=False)
            else:
                conv.bias.copy_(bias.to(conv.bias.dtype))
            _set_submodule(work, bn_name, nn.Identity())
            folded.pairs[conv_name] = bn_name
            folded.scales[conv_name] = s
    if not folded.pairs and not folded.reason:
        folded.reason = (
            f"none of the {len(pairs)} conv-BatchNorm pairs can be folded exactly (a direction moves the "
            "BatchNorm, it keeps no running statistics, or a weight is shared)" if pairs
            else "no convolution feeds a BatchNorm and nothing else"
        )
    return folded
