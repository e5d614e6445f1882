"""Hessian-vector products on models with fused attention (issue 22, item 1): every product of the package runs
under the math attention kernel and equals an independent reference; an operation without double backward is
named by the pre-flight check."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_papers.landscape import Direction, hessian_eigenvalues, hessian_top_eigenvalue
from lightning_papers.landscape.double_backward import double_backward_blocker


class TinyLM(nn.Module):
    """A one-layer ``nn.TransformerEncoder`` language model (the fused scaled-dot-product attention path)."""

    def __init__(self, vocab: int = 11, d: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, x):
        return self.head(self.enc(self.emb(x)))


def _lm_loss(model):
    def loss(out, y):
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    return loss


def _fd_rayleigh(model, loss, v: dict) -> float:
    """``v^T H v`` by central differences of gradients (first backward only: any attention kernel) in float64."""
    params = dict(model.named_parameters())
    eps = 1e-4

    def grad_at(sign):
        with torch.no_grad():
            for n, p in params.items():
                p.add_(sign * eps * v[n])
        g = torch.autograd.grad(loss(), list(params.values()))
        with torch.no_grad():
            for n, p in params.items():
                p.sub_(sign * eps * v[n])
        return g

    gp, gm = grad_at(1.0), grad_at(-1.0)
    return float(sum(((a - b) / (2 * eps) * v[n]).sum() for (n, _), a, b in zip(params.items(), gp, gm)))


def _unit_direction(model, seed=3):
    gen = torch.Generator().manual_seed(seed)
    v = {n: torch.randn(p.shape, generator=gen, dtype=torch.float64) for n, p in model.named_parameters()}
    norm = math.sqrt(sum(float((t * t).sum()) for t in v.values()))
    return {n: t / norm for n, t in v.items()}


def test_transformer_encoder_hvp_equals_finite_differences():
    torch.manual_seed(0)
    model = TinyLM().double()
    x, y = torch.randint(0, 11, (3, 5)), torch.randint(0, 11, (3, 5))
    loss_fn = _lm_loss(model)
    v = _unit_direction(model)
    model.eval()
    ref = _fd_rayleigh(model, lambda: loss_fn(model(x), y), v)
    # one Lanczos step from v: the Ritz value is v^T H v
    res = hessian_eigenvalues(model, [(x, y)], loss_fn, max_iter=1, start=Direction(v, "weights"), eigenvectors=False)
    assert res.eigenvalues[0] == pytest.approx(ref, rel=1e-6)


def test_sharpness_power_iteration_on_transformer_encoder():
    torch.manual_seed(0)
    model = TinyLM().double()
    x, y = torch.randint(0, 11, (3, 5)), torch.randint(0, 11, (3, 5))
    loss_fn = _lm_loss(model)
    # hessian_top_eigenvalue's first iterate is the Rayleigh quotient of its seeded float32 start vector
    gen = torch.Generator().manual_seed(0)
    v = {n: torch.randn(p.shape, generator=gen, dtype=torch.float32).double() for n, p in model.named_parameters()}
    norm = math.sqrt(sum(float((t * t).sum()) for t in v.values()))
    v = {n: t / norm for n, t in v.items()}
    model.eval()
    ref = _fd_rayleigh(model, lambda: loss_fn(model(x), y), v)
    res = hessian_top_eigenvalue(model, [(x, y)], loss_fn, max_iter=1, seed=0)
    assert res.history[0] == pytest.approx(ref, rel=1e-6)


def test_bert_sdpa_top_eigenvalue_equals_eager_attention():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    sdpa = transformers.BertForSequenceClassification(config)
    assert sdpa.config._attn_implementation == "sdpa"  # the default: fused attention
    # a copy of the config: `_from_config` sets the attention implementation on the config it is given
    eager = transformers.BertForSequenceClassification._from_config(copy.deepcopy(config), attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    batches = [(torch.randint(0, 30, (4, 8)), torch.randint(0, 3, (4,)))]
    values = []
    for model in (sdpa, eager):
        def evaluate(b, model=model):
            return {"loss": model(input_ids=b[0], labels=b[1]).loss}

        values.append(hessian_eigenvalues(model, batches, evaluate=evaluate, k=2, max_iter=40,
                                          eigenvectors=False).eigenvalues)
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    assert values[0][0] > 0


def test_blocker_names_the_operation_without_double_backward():
    torch.manual_seed(0)
    net = nn.Linear(4, 5)
    x = torch.randn(6, 2, 4)
    targets, lengths, target_lengths = torch.randint(1, 5, (2, 3)), torch.tensor([6, 6]), torch.tensor([3, 3])

    def loss():
        return F.ctc_loss(net(x).log_softmax(-1), targets, lengths, target_lengths)

    assert double_backward_blocker(loss, list(net.parameters())) == "aten::_ctc_loss_backward"
    lm = TinyLM()
    xb, yb = torch.randint(0, 11, (2, 4)), torch.randint(0, 11, (2, 4))
    assert double_backward_blocker(lambda: _lm_loss(lm)(lm(xb), yb), list(lm.parameters())) is None
