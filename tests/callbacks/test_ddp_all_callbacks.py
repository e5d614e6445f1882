"""Every callback of the package in one 2-process DDP run (CPU, gloo).

``ConvArithmeticSummary`` used to return early on ranks other than 0 and then call ``trainer.log_dir`` (a
collective) on rank 0 alone: rank 0 waited forever. The process group here times out after 60 s, so a
callback that calls a collective on some ranks only fails this test instead of hanging the suite.
``LRRangeFinder``, ``SuperConvergence`` and ``LossLandscapeProbe`` have their own DDP tests beside their other
tests; this one puts ``TensorBoardLayout``, ``ConvArithmeticSummary``, ``CyclicalLR`` and ``CurvatureMonitor`` under
DDP together with the finder and an interpolation probe, in one Trainer, and checks that the ranks agree.
``CurvatureMonitor`` shards its batches (each rank its own) and sums the Hessian-vector products over ranks: its
value must equal the top eigenvalue on both ranks' batches together, computed in one process.
"""

import json

import pytest
import torch

_SCRIPT = '''
import json, sys
from datetime import timedelta

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from torch import nn

from lightning_papers.callbacks import (ConvArithmeticSummary, CurvatureMonitor, CyclicalLR, LossLandscapeProbe,
                                        LRRangeFinder, TensorBoardLayout)
from lightning_papers.data import DigitsDataModule
from lightning_papers.landscape import hessian_eigenvalues
from lightning_papers.modules import ImageClassifier


class Recorder(Callback):
    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append(optimizer.param_groups[0]["lr"])


if __name__ == "__main__":
    L.seed_everything(0, verbose=False)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    finder = LRRangeFinder(1e-3, 1.0, num_steps=12, divergence_factor=None)
    clr = CyclicalLR("finder", "finder", step_size=2, fallback_lr=(0.01, 0.1))  # 12 steps may not be readable
    probe = LossLandscapeProbe("interpolate", grid=np.linspace(0, 1, 3), num_batches=1, sharpness=False)
    summary, recorder = ConvArithmeticSummary(), Recorder()
    monitor = CurvatureMonitor(every_n_steps=2, max_iter=30, tol=1e-4)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy=DDPStrategy(timeout=timedelta(seconds=60)), max_epochs=1,
        limit_train_batches=4, limit_val_batches=1, num_sanity_val_steps=0,
        logger=TensorBoardLogger(sys.argv[1], name="tb", version=0),
        callbacks=[TensorBoardLayout(), summary, finder, clr, probe, monitor, recorder],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    module = ImageClassifier(net, lr=0.05)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=16))
    shares = [None] * trainer.world_size  # each rank's curvature batches, joined: the Hessian in one process
    torch.distributed.all_gather_object(shares, [(x, y) for x, y in monitor._batches])
    union = [batch for share in shares for batch in share]
    alone = hessian_eigenvalues(module, union, torch.nn.functional.cross_entropy, batchnorm="batch", tol=1e-8,
                                max_iter=200, eigenvectors=False).eigenvalues[0]
    out = {"rank": trainer.global_rank, "lrs": recorder.lrs, "bounds": list(finder.result.clr_bounds or []),
           "trusted": finder.result.trusted,
           "losses": finder.result.losses, "schedule": clr.schedule.to_dict(),
           "trace_rows": len(summary.trace.rows), "receptive_field": summary.trace.receptive_field,
           "interpolation": probe.results[0]["loss"].tolist(), "curvature": monitor.history.to_dict(),
           "curvature_alone": alone, "curvature_batches_differ": not torch.equal(shares[0][0][0], shares[1][0][0])}
    with open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w") as f:
        json.dump(out, f)
    torch.distributed.destroy_process_group()  # see tests/conftest.py::run_script
'''


@pytest.mark.timeout(240)
def test_every_callback_under_ddp_agrees_across_ranks_and_writes_once(tmp_path, run_script):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_script(_SCRIPT, "ddp_all.py", timeout=230)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for key in ("lrs", "bounds", "trusted", "losses", "schedule", "trace_rows", "receptive_field", "interpolation",
                "curvature"):
        assert ranks[0][key] == ranks[1][key], key
    # the curvature: every rank measured on its own batch, and the value is the Hessian of both together
    curvature = ranks[0]["curvature"]
    assert curvature["steps"] == [2, 4] and ranks[0]["curvature_batches_differ"]
    assert curvature["top_eigenvalue"][-1] == pytest.approx(ranks[0]["curvature_alone"], rel=1e-4)
    # the lrs both ranks used are torch's CyclicLR between the bounds the finder found (and broadcast), or, when
    # its reading cannot be trusted, the fallback
    base, peak = ranks[0]["bounds"] if ranks[0]["trusted"] else (0.01, 0.1)
    assert (ranks[0]["schedule"]["base_lr"], ranks[0]["schedule"]["max_lr"]) == ([base], [peak])
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, base, peak, step_size_up=2, cycle_momentum=False)
    expected = []
    for _ in ranks[0]["lrs"]:
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert ranks[0]["lrs"] == expected and len(expected) == 4
    assert ranks[0]["trace_rows"] == 2 and ranks[0]["interpolation"][0] > ranks[0]["interpolation"][-1]
    # rank 0 wrote each file once; TensorBoard has the layout, the table, the curve and the interpolation
    log_dir = tmp_path / "tb" / "version_0"
    assert (log_dir / "conv_arithmetic" / "trace.json").is_file()
    assert (log_dir / "lr_range" / "result.json").is_file()
    assert len(list((log_dir / "landscape").glob("interpolate_epoch0.npz"))) == 1
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert "custom_scalars__config__" in tags["tensors"]
    assert "conv_arithmetic/table/text_summary" in tags["tensors"]
    assert {"lr_range/curve", "landscape/interpolation"} <= set(tags["images"])
    assert {"schedule/lr", "curvature/top_eigenvalue", "curvature/2_over_lr"} <= set(tags["scalars"])
    assert "curvature/sharpness" in tags["images"] and (log_dir / "curvature" / "history.json").is_file()
