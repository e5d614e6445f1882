"""Fast style transfer (Johnson, Alahi, Fei-Fei, arXiv 1603.08155): our network, module and stylize path vs a plain
PyTorch re-implementation in this script.

Inference (``--parts inference``), one image per call, at each ``--sizes`` entry:
  * ``plain``: ``PlainTransformerNet``, written out below as one flat ``nn.Module`` with the same layer sequence
    (reflection pad, conv, instance norm, ReLU; five residual blocks; nearest x2 + conv twice; a 9x9 conv and a
    sigmoid), loaded with our network's weights by an explicit state-dict mapping; its outputs are asserted equal
    to ours before anything is timed;
  * ``ours``: ``lightning_papers.models.TransformerNet``, called the same way (``no_grad``, autocast, memory format
    and ``torch.compile`` as asked);
  * ``runner``: the stylize path, ``ImageRunner(ImageModel(net))`` from ``lightning_papers.modules`` (what
    ``lightning-papers stylize`` runs: clamps, returns float32). Skipped with a note where that module is missing.
The ratio printed is plain/ours in time per image (>= 1.0: ours is not slower).

Training step (``--parts train``), batch 4 (the paper's): ``FastStyleTransfer.training_step`` under a Lightning
``Trainer`` vs a plain loop over the same in-memory batches (``PlainTransformerNet`` + torchvision's VGG-16
``features`` + the same content/style/TV losses written out; forward, loss, backward, Adam step). Both start
from the same network and VGG weights and the same style target, and their first losses are compared. The VGG
has RANDOM weights (chosen explicitly: speed only, no download; the output says so). Time per step after
``--train-warmup`` steps; the ratio printed is ours/plain (goal <= 1.05).

Contenders alternate within each round, so drift in the machine's speed hits them alike; figures are medians
over ``--rounds``. One JSON line per configuration (``"benchmark": "style_transfer"``).

Usage::

    python benchmarks/style_transfer.py                                  # CPU: 128x128 and 256x256, train at 64 px
    python benchmarks/style_transfer.py --device cuda --sizes 256 512 1024 1920x1080 --precision 16 --compile
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings
from contextlib import nullcontext

import lightning as L
import torch
import torch.nn.functional as F
from _common import backward_step, device_name, sync
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_papers.models import TransformerNet
from lightning_papers.modules import FastStyleTransfer

REFERENCE = "plain PyTorch re-implementation in this script"
AUTOCAST = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
LIGHTNING_PRECISION = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}
# match tolerance (max absolute difference of images in [0, 1]) between plain and ours, per precision
TOLERANCE = {"32": 1e-4, "bf16": 5e-2, "16": 1e-2}
STYLE_PHOTO = "immunohistochemistry"
CONTENT_W, STYLE_W, TV_W = 1.0, 1e5, 1e-5  # lightning_papers/recipes/style_transfer/*.yaml
STYLE_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}  # index in torchvision's vgg16().features
CONTENT_LAYER = "relu2_2"


# -- the reference: the same network, written out plainly ----------------------------------------------------------
class PlainResidualBlock(nn.Module):
    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, bias=False)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, bias=False)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(F.pad(x, (1, 1, 1, 1), mode="reflect"))))
        return x + self.in2(self.conv2(F.pad(y, (1, 1, 1, 1), mode="reflect")))


class PlainTransformerNet(nn.Module):
    """Johnson et al.'s style network as usually written (instance norm, nearest-upsample + conv), for H and W
    that are multiples of 4 (ours pads other sizes internally; every size timed here is a multiple of 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.in1 = nn.Conv2d(3, 32, 9, bias=False), nn.InstanceNorm2d(32, affine=True)
        self.conv2, self.in2 = nn.Conv2d(32, 64, 3, stride=2, bias=False), nn.InstanceNorm2d(64, affine=True)
        self.conv3, self.in3 = nn.Conv2d(64, 128, 3, stride=2, bias=False), nn.InstanceNorm2d(128, affine=True)
        self.res = nn.Sequential(*(PlainResidualBlock(128) for _ in range(5)))
        self.up1, self.in4 = nn.Conv2d(128, 64, 3, bias=False), nn.InstanceNorm2d(64, affine=True)
        self.up2, self.in5 = nn.Conv2d(64, 32, 3, bias=False), nn.InstanceNorm2d(32, affine=True)
        self.conv_out = nn.Conv2d(32, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(F.pad(x, (4, 4, 4, 4), mode="reflect"))))
        y = F.relu(self.in2(self.conv2(F.pad(y, (1, 1, 1, 1), mode="reflect"))))
        y = F.relu(self.in3(self.conv3(F.pad(y, (1, 1, 1, 1), mode="reflect"))))
        y = self.res(y)
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = F.relu(self.in4(self.up1(F.pad(y, (1, 1, 1, 1), mode="reflect"))))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = F.relu(self.in5(self.up2(F.pad(y, (1, 1, 1, 1), mode="reflect"))))
        return torch.sigmoid(self.conv_out(F.pad(y, (4, 4, 4, 4), mode="reflect")))


def _key_map() -> dict[str, str]:
    """Our ``TransformerNet`` state-dict prefix -> the plain network's, module by module."""
    mapping = {"down.0.1": "conv1", "down.0.2": "in1", "down.1.1": "conv2", "down.1.2": "in2",
               "down.2.1": "conv3", "down.2.2": "in3", "up.0.2": "up1", "up.0.3": "in4",
               "up.1.2": "up2", "up.1.3": "in5", "head.1": "conv_out"}
    for i in range(5):
        for ours, plain in (("conv1", "conv1"), ("norm1", "in1"), ("conv2", "conv2"), ("norm2", "in2")):
            mapping[f"residuals.{i}.{ours}"] = f"res.{i}.{plain}"
    return mapping


def plain_from_ours(net: TransformerNet) -> PlainTransformerNet:
    """A ``PlainTransformerNet`` holding ``net``'s weights (strict: every tensor of both is mapped)."""
    mapping, state = _key_map(), {}
    for key, value in net.state_dict().items():
        prefix, _, leaf = key.rpartition(".")
        if prefix not in mapping:
            raise KeyError(f"no plain counterpart for TransformerNet parameter {key!r}")
        state[f"{mapping[prefix]}.{leaf}"] = value.detach().clone()
    plain = PlainTransformerNet()
    plain.load_state_dict(state, strict=True)
    return plain


# -- inference ------------------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"1920x1080"`` (width x height) -> (1080, 1920), as (H, W)."""
    w, _, h = text.lower().partition("x")
    size = (int(h or w), int(w))
    if any(s < 8 or s % 4 for s in size):
        raise argparse.ArgumentTypeError(f"expected sizes that are multiples of 4 and >= 8, got {text!r}")
    return size


def _prepare(net: nn.Module, device: torch.device, args) -> nn.Module:
    net = net.to(device).eval()
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return torch.compile(net) if args.compile else net


def _call(net: nn.Module, x: torch.Tensor, device: torch.device, precision: str) -> torch.Tensor:
    dtype = AUTOCAST[precision]
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    with torch.no_grad(), ctx:
        return net(x)


def make_runner(net: TransformerNet, device: torch.device, args):
    """The stylize path, ``ImageRunner(ImageModel(net), ...)``, with this run's options; None if unavailable.

    ``lightning-papers stylize`` loads a checkpoint into an ``ImageModel`` and applies it through an ``ImageRunner``;
    here the same two classes wrap a copy of the timed network (no checkpoint file involved).
    """
    try:
        from lightning_papers.modules import ImageModel, ImageRunner
    except ImportError as err:
        print(f"note: the stylize runner is not timed ({err})")
        return None
    return ImageRunner(ImageModel(copy.deepcopy(net), kind="FastStyleTransfer"), device=device,
                       precision=args.precision, channels_last=args.channels_last, compile=args.compile,
                       cuda_graphs=args.cuda_graphs)


def time_calls(fn, x: torch.Tensor, device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per call of ``fn(x)`` after ``warmup`` untimed calls, device synchronised."""
    for _ in range(warmup):
        fn(x)
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn(x)
    sync(device)
    return (time.perf_counter() - start) / iters


def bench_inference(args, device: torch.device, name: str) -> None:
    torch.manual_seed(0)
    ours_net = TransformerNet().eval()
    with torch.no_grad():  # non-trivial instance-norm affines, so the state-dict mapping is really checked
        for m in ours_net.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    plain_net = plain_from_ours(ours_net).eval()

    # exact match first, fp32 eager, before any timing
    probe = torch.rand(1, 3, 36, 52, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact = (plain_net(probe) - ours_net(probe)).abs().max().item()
    if exact > 1e-5:
        raise AssertionError(f"plain and ours differ by {exact:.2e} in fp32 eager: the mapping is wrong")

    fns = {"plain": _prepare(copy.deepcopy(plain_net), device, args),
           "ours": _prepare(copy.deepcopy(ours_net), device, args)}
    runner = make_runner(ours_net, device, args)
    labels = {"plain": f"plain ({REFERENCE})", "ours": "ours: TransformerNet"}
    if runner is not None:
        labels["runner"] = f"stylize path: ImageRunner ({runner.describe()})"
    calls = {"plain": lambda x: _call(fns["plain"], x, device, args.precision),
             "ours": lambda x: _call(fns["ours"], x, device, args.precision)}
    if runner is not None:
        calls["runner"] = runner

    for h, w in args.sizes:
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * w)).to(device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outs = {k: fn(x).float() for k, fn in calls.items()}  # also the first (compiling) call
        diffs = {k: (outs[k] - outs["plain"]).abs().max().item() for k in outs if k != "plain"}
        # the runner clamps to [0, 1]; the sigmoid output already is, so the same tolerance holds
        bad = {k: d for k, d in diffs.items() if not d <= TOLERANCE[args.precision]}
        if bad:
            raise AssertionError(f"{h}x{w}: outputs differ from the plain reference by {bad} "
                                 f"(tolerance {TOLERANCE[args.precision]} at precision {args.precision})")
        del outs
        times: dict[str, list[float]] = {k: [] for k in calls}
        for r in range(args.rounds):
            order = list(calls) if r % 2 == 0 else list(reversed(calls))
            for k in order:
                times[k].append(time_calls(calls[k], x, device, args.warmup, args.iters))
        med = {k: statistics.median(v) for k, v in times.items()}
        cfg = (f"{w}x{h}, precision {args.precision}, channels_last={args.channels_last}, compile={args.compile}, "
               f"{device} ({name}), median of {args.rounds} rounds x {args.iters} calls")
        print(f"\ninference {cfg}")
        for k, t in med.items():
            print(f"  {labels[k]:<80}{t * 1e3:>10.2f} ms/image")
        ratio = med["plain"] / med["ours"]
        line = f"  plain/ours = {ratio:.3f}x (goal >= 1.0); max |ours - plain| = {diffs['ours']:.1e}"
        if "runner" in med:
            line += f"; plain/runner = {med['plain'] / med['runner']:.3f}x"
        print(line)
        record = {
            "benchmark": "style_transfer", "part": "inference", "size": [h, w], "batch": 1,
            "precision": args.precision, "channels_last": args.channels_last, "compile": args.compile,
            "device": device.type, "device_name": name, "torch": torch.__version__, "reference": REFERENCE,
            "ms_per_image": {k: round(v * 1e3, 3) for k, v in med.items()},
            "ratio_plain_ours": round(ratio, 4),
            "max_abs_diff": {k: float(f"{d:.3g}") for k, d in diffs.items()},
            "all_ms": {k: [round(t * 1e3, 3) for t in v] for k, v in times.items()},
        }
        if runner is not None:
            record["ratio_plain_runner"] = round(med["plain"] / med["runner"], 4)
            record["runner"] = runner.describe()
        print(json.dumps(record))


# -- one training step --------------------------------------------------------------------------------------------
class PlainVGG(nn.Module):
    """torchvision's VGG-16 ``features`` up to relu4_3, returning the four taps; ImageNet normalisation inside."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import vgg16

        self.features = vgg16(weights=None).features[: max(STYLE_LAYERS.values()) + 1]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.taps = {i: n for n, i in STYLE_LAYERS.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, h = {}, (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out[self.taps[i]] = h
        return out


def gram(f: torch.Tensor) -> torch.Tensor:
    n, c, hh, ww = f.shape
    f = f.float().reshape(n, c, hh * ww)
    return torch.bmm(f, f.transpose(1, 2)) / (c * hh * ww)


def plain_loss(net: nn.Module, vgg: PlainVGG, targets: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Content (relu2_2 MSE) + style (Gram distance per layer, weighted 1/C^2) + TV (L1 mean), as in the recipes."""
    y = net(x)
    fy = vgg(y)
    with torch.no_grad():
        fx = vgg(x)[CONTENT_LAYER]
    content = F.mse_loss(fy[CONTENT_LAYER], fx)
    style = sum(((gram(fy[n]) - targets[n]) ** 2).sum(dim=(1, 2)).mean() / fy[n].shape[1] ** 2 for n in targets)
    n, c, hh, ww = y.shape
    tv = ((y[:, :, 1:] - y[:, :, :-1]).abs().sum() + (y[..., 1:] - y[..., :-1]).abs().sum()) / (n * c * hh * ww)
    return CONTENT_W * content + STYLE_W * style + TV_W * tv


class StepTimer(Callback):
    """Wall time from the start of step ``warmup`` to the end of training (device synchronised); first loss."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.first_loss = warmup, None, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup and self.start is None:
            sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.first_loss is None:
            self.first_loss = float(outputs["loss"])

    def on_train_end(self, trainer, pl_module):
        sync(pl_module.device)
        self.end = time.perf_counter()


def _ours_module(args) -> FastStyleTransfer:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*untrained loss network.*")
        module = FastStyleTransfer(style_image=STYLE_PHOTO, style_size=args.train_size, content_weight=CONTENT_W,
                                   style_weight=STYLE_W, tv_weight=TV_W, vgg_weights="random",
                                   sample_every_n_steps=0)
        module.build_loss()  # now, on the CPU, so the plain loop can copy the same VGG weights and style target
    return module


def run_ours(module: FastStyleTransfer, loader: DataLoader, args, accelerator: str) -> tuple[float, float]:
    timer = StepTimer(args.train_warmup)
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=LIGHTNING_PRECISION[args.precision],
                        max_steps=args.train_warmup + args.train_steps, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(module, train_dataloaders=loader)
    return (timer.end - timer.start) / args.train_steps, timer.first_loss


def run_plain(module: FastStyleTransfer, loader: DataLoader, args, device: torch.device) -> tuple[float, float]:
    net = plain_from_ours(module.net).to(device).train()
    vgg = PlainVGG()
    vgg.features.load_state_dict(module.loss_fn.vgg.features.state_dict())  # same random VGG weights
    vgg = vgg.to(device).eval()
    targets = {n: t.to(device) for n, t in module.loss_fn.target_grams.items()}
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    dtype = AUTOCAST[args.precision]
    scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
    step, start, first = 0, None, None
    total = args.train_warmup + args.train_steps
    while step < total:
        for (x,) in loader:
            if step == args.train_warmup:
                sync(device)
                start = time.perf_counter()
            if step == total:
                break
            x = x.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
                loss = plain_loss(net, vgg, targets, x)
            backward_step(loss, opt, scaler)
            if first is None:
                first = float(loss.detach())
            step += 1
    sync(device)
    return (time.perf_counter() - start) / args.train_steps, first


def bench_train(args, device: torch.device, name: str) -> None:
    s, batch = args.train_size, 4
    n = batch * (args.train_warmup + args.train_steps)
    images = torch.rand(n, 3, s, s, generator=torch.Generator().manual_seed(0))
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    times: dict[str, list[float]] = {"plain": [], "ours": []}
    first: dict[str, float] = {}
    for r in range(args.rounds):
        for k in (("plain", "ours") if r % 2 == 0 else ("ours", "plain")):
            torch.manual_seed(r)
            module = _ours_module(args)  # both contenders start from this module's network, VGG and style
            loader = DataLoader(TensorDataset(images), batch_size=batch, shuffle=False)
            with warnings.catch_warnings():
                for message in (".*does not have many workers.*", ".*no `val_dataloader`.*", ".*in eval mode.*"):
                    warnings.filterwarnings("ignore", message=message)  # the loader, no validation, the frozen VGG
                t, loss = run_plain(module, loader, args, device) if k == "plain" else \
                    run_ours(module, loader, args, accelerator)
            times[k].append(t)
            first.setdefault(k, loss)
    med = {k: statistics.median(v) for k, v in times.items()}
    rel = abs(first["ours"] - first["plain"]) / max(abs(first["plain"]), 1e-12)
    print(f"\ntraining step, batch {batch} of {s}x{s} random images (in memory), precision {args.precision}, "
          f"{device} ({name}), median of {args.rounds} rounds x {args.train_steps} steps after "
          f"{args.train_warmup} warm-up steps")
    print("  the VGG-16 loss network has RANDOM weights in both (explicit, for timing only)")
    print(f"  {'plain loop (' + REFERENCE + ')':<80}{med['plain'] * 1e3:>10.1f} ms/step")
    print(f"  {'ours: FastStyleTransfer.training_step under Trainer':<80}{med['ours'] * 1e3:>10.1f} ms/step")
    print(f"  ours/plain = {med['ours'] / med['plain']:.3f}x (goal <= 1.05); first loss ours {first['ours']:.6g}, "
          f"plain {first['plain']:.6g} (relative difference {rel:.1e})")
    print(json.dumps({
        "benchmark": "style_transfer", "part": "train", "size": [s, s], "batch": batch,
        "precision": args.precision, "device": device.type, "device_name": name, "torch": torch.__version__,
        "lightning": L.__version__, "reference": REFERENCE, "vgg_weights": "random",
        "ms_per_step": {k: round(v * 1e3, 3) for k, v in med.items()},
        "ratio_ours_plain": round(med["ours"] / med["plain"], 4),
        "first_loss": first, "first_loss_rel_diff": float(f"{rel:.3g}"),
        "all_ms": {k: [round(t * 1e3, 3) for t in v] for k, v in times.items()},
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--parts", nargs="+", choices=("inference", "train"), default=["inference", "train"])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=None,
                        help="inference sizes, N or WxH (default: 128 256 on a CPU, 256 512 1024 1920x1080 on CUDA)")
    parser.add_argument("--precision", default="32", choices=tuple(AUTOCAST), help="float32, or autocast bf16/fp16")
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights and inputs (inference)")
    parser.add_argument("--compile", action="store_true", help="torch.compile each network (inference)")
    parser.add_argument("--cuda-graphs", action="store_true", help="the runner records CUDA graphs (its --fast path)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per contender per round")
    parser.add_argument("--iters", type=int, default=None, help="timed calls per round (default: 3 CPU, 20 CUDA)")
    parser.add_argument("--train-size", type=int, default=None, help="training crop size (default: 64 CPU, 256 CUDA)")
    parser.add_argument("--train-steps", type=int, default=None, help="timed steps per round (default: 3 CPU, 30 CUDA)")
    parser.add_argument("--train-warmup", type=int, default=None, help="untimed steps first (default: 2 CPU, 10 CUDA)")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device in ("cuda", "gpu") else args.device)
    cuda = device.type == "cuda"
    if args.sizes is None:
        args.sizes = [parse_size(s) for s in (("256", "512", "1024", "1920x1080") if cuda else ("128", "256"))]
    args.iters = args.iters or (20 if cuda else 3)
    args.train_size = args.train_size or (256 if cuda else 64)
    args.train_steps = args.train_steps or (30 if cuda else 3)
    args.train_warmup = args.train_warmup if args.train_warmup is not None else (10 if cuda else 2)
    if args.cuda_graphs and not cuda:
        parser.error("--cuda-graphs needs --device cuda")
    if "train" in args.parts and args.precision == "16" and not cuda:
        # Lightning would silently train in bf16 instead, and the plain loop in fp16: not the same contest
        parser.error("--precision 16 trains only on CUDA (Lightning turns 16-mixed into bf16-mixed on a CPU)")
    torch.backends.cudnn.benchmark = True
    name = device_name(device)
    print(f"style transfer benchmark on {device} ({name}), torch {torch.__version__}, lightning {L.__version__}; "
          f"reference: {REFERENCE}")
    if "inference" in args.parts:
        bench_inference(args, device, name)
    if "train" in args.parts:
        bench_train(args, device, name)


if __name__ == "__main__":
    main()
