"""The fidelity scripts (``benchmarks/fidelity_*.py``) in ``--fast`` mode: each runs, prints its tables and one
JSON line with the keys the README's "Does it reproduce?" table is written from. The effects themselves are
measured by running the scripts with their defaults, not here: these tests assert structure, not results."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def scripts():
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return lambda name: importlib.import_module(name)


@pytest.fixture(autouse=True)
def _process_state_restored():
    """The scripts quiet Lightning's loggers and set torch's thread count for a measurement; run in-process, that
    must not leak into the tests that follow (a later test's caplog saw nothing, and every later test ran on one
    thread)."""
    import logging

    import torch

    names = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_papers")
    levels = {name: logging.getLogger(name).level for name in names}
    threads = torch.get_num_threads()
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    torch.set_num_threads(threads)


def _json_line(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, "one JSON line"
    return json.loads(lines[0])


def _is_mean_std_n(stats: dict) -> bool:
    return set(stats) == {"mean", "std", "n"} and stats["n"] >= 1 and 0.0 <= stats["mean"] <= 1.0


def test_superconvergence_fast(scripts, capsys, tmp_path):
    sc = scripts("fidelity_superconvergence")
    fid = scripts("_fidelity")
    png = tmp_path / "sc.png"
    summary = sc.main(["--fast", "--plot", str(png), "--cache", str(tmp_path / "runs.jsonl")])
    out = capsys.readouterr().out
    assert _json_line(out) == json.loads(json.dumps(summary, default=float))
    assert {"benchmark", "claim", "task", "n", "budget", "budgets", "peaks", "weight_decays", "range_test", "chosen",
            "baseline_plateau", "accuracy", "test_accuracy", "rule", "paired", "halves", "paired_verdict", "arms",
            "seconds", "load_average", "uptime_load", "cpu"} <= set(summary)
    assert summary["benchmark"] == "fidelity_superconvergence" and summary["n"] == 2
    budget = summary["budget"]
    assert summary["budgets"] == [budget // 8, budget]
    assert "150 training / 300 validation / 1347 test" in summary["task"]  # a three-way split, test kept apart
    # the precondition: an accuracy sweep on several seeds, its rule and reading recorded; peaks from its range
    sweep = summary["range_test"]
    assert sweep["kind"] == "accuracy" and len(sweep["seeds"]) == 2 and len(sweep["val_acc"]) == 2
    assert len(sweep["lrs"]) == len(sweep["mean_val_acc"]) == len(sweep["val_acc"][0]) == 24 // 6
    assert sweep["mean_val_acc"] == pytest.approx([sum(c) / 2 for c in zip(*sweep["val_acc"])])
    low, high = sweep["high_range"]
    assert sweep["precondition_holds"] == (high / low >= sweep["min_span"]) and "rule" in sweep
    assert summary["peaks"] == pytest.approx([high / 10, high])
    # equal weight-decay grids: every schedule and budget tried every decay, the choice is the best validation mean
    for name, choice in summary["chosen"].items():
        assert {g["weight_decay"] for g in choice["grid"]} == set(summary["weight_decays"]), name
        assert choice["val_mean"] == max(g["val_mean"] for g in choice["grid"])
    assert set(summary["chosen"]) == {"baseline B/8", "baseline B", "1cycle B/8", "1cycle B"}
    assert set(summary["accuracy"]["baseline"]) == {str(budget // 8), str(budget), str(2 * budget)}
    for peak in summary["peaks"]:
        assert set(summary["accuracy"][f"1cycle {peak:.3g}"]) == {str(budget // 8), str(budget)}
    for by_budget in summary["accuracy"].values():
        assert all(_is_mean_std_n(s) for s in by_budget.values())
    for stats in summary["test_accuracy"].values():  # test accuracy of the chosen configurations, per seed
        assert _is_mean_std_n({k: stats[k] for k in ("mean", "std", "n")}) and len(stats["per_seed"]) == 2
        assert stats["mean"] == pytest.approx(sum(stats["per_seed"]) / 2)
    assert set(summary["baseline_plateau"]) == {"acc_mean", "acc_std", "double_budget_acc_mean", "gain_points",
                                                "plateaued", "on"}
    assert png.stat().st_size > 1000 and "doubling gains" in out and "± " in out
    # both halves of the claim, from test differences; every verdict is the written rule applied to the numbers
    half1, half2 = summary["paired"].values()
    assert half1["margin"] == 0.005 and "margin" not in half2
    test = {name: stats["per_seed"] for name, stats in summary["test_accuracy"].items()}
    assert half1["diffs"] == pytest.approx([a - b for a, b in zip(test["1cycle B/8"], test["baseline B"])])
    assert half2["diffs"] == pytest.approx([a - b for a, b in zip(test["1cycle B"], test["baseline B"])])
    for block in [*summary["paired"].values(), *summary["arms"].values()]:
        assert len(block["diffs"]) == 2 and all(-1.0 <= d <= 1.0 for d in block["diffs"])
        shifted = [d + block.get("margin", 0.0) for d in block["diffs"]]
        assert block["verdict"] == fid.verdict(shifted, block["direction"])
    assert list(summary["halves"].values()) == [half1["verdict"], half2["verdict"]]
    assert summary["paired_verdict"] == summary["verdict"] == fid.combined_verdict(list(summary["halves"].values()))
    assert len(summary["arms"]) == 4 and any(k.startswith("batch 128") for k in summary["arms"])
    assert any(k.startswith("100 images") for k in summary["arms"])
    # the cache resumes: a second run trains nothing new and gives the same numbers
    again = sc.main(["--fast", "--cache", str(tmp_path / "runs.jsonl")])
    assert again["paired"] == summary["paired"] and again["arms"] == summary["arms"]



def test_lr_range_fast(scripts, capsys):
    summary = scripts("fidelity_lr_range").main(["--fast"])
    out = capsys.readouterr().out
    assert _json_line(out)["benchmark"] == "fidelity_lr_range"
    assert {"table", "sweeps", "beats", "verdict", "steps_per_run", "n", "seconds", "load_average"} <= set(summary)
    assert {"lightning", "ours", "ours x0.1", "ours x10"} <= set(summary["table"])
    for row in summary["table"].values():
        assert {"lrs", "acc_mean", "acc_std", "n", "accs"} <= set(row)
    ours = summary["table"]["ours"]["lrs"][0]
    assert summary["table"]["ours x10"]["lrs"][0] == pytest.approx(10 * ours)
    assert set(summary["sweeps"]) == {"8", "12"}
    for sweep in summary["sweeps"].values():
        assert {"suggestions", "clr_bounds", "flagged", "problems", "bounds_below_range"} <= set(sweep)
        assert sweep["bounds_below_range"] == 0  # never below the sweep's own range
    assert summary["verdict"] == summary["paired_verdict"]
    assert "flagged untrustworthy" in out
    # paired per-seed differences: one seed in --fast, so the difference is ours - rival there and no interval
    table = summary["table"]
    for rival, block in summary["paired"].items():
        assert block["diffs"] == pytest.approx([table["ours"]["accs"][0] - table[rival]["accs"][0]])
        assert block["ci"] == [-math.inf, math.inf] and block["verdict"] == "inconclusive"
    assert summary["paired_verdict"] == "inconclusive"
    assert "1197 training / 300 validation / 300 test" in summary["task"]  # the per-seed split, test kept apart
    assert len(summary["uptime"]["start"]) == 3  # uptime's 1-, 5- and 15-minute load


def test_clr_fast(scripts, capsys):
    clr = scripts("fidelity_clr")
    summary = clr.main(["--fast"])
    out = capsys.readouterr().out
    assert _json_line(out)["benchmark"] == "fidelity_clr"
    assert {"best_fixed_lr", "fixed_sweep", "rows", "finders", "clr_reached", "clr_fraction_of_fixed_steps",
            "fixed_test_acc", "clr_test_acc", "curves", "paired", "paired_verdict", "verdict", "seconds",
            "load_average", "uptime"} <= set(summary)
    assert summary["best_fixed_lr"] in summary["args"]["fixed_lrs"]
    assert summary["n"] == len(summary["rows"]) == 2  # every seed is a row, reached or not
    window = summary["args"]["smooth"]
    for row in summary["rows"]:
        # the target is the best trailing mean of the fixed policy's validation curve, re-derived here
        curve = summary["curves"]["fixed"][str(row["seed"])]
        means = [sum(a for _, a in curve[i - window + 1 : i + 1]) / window for i in range(window - 1, len(curve))]
        assert row["target"] == pytest.approx(max(means))
        assert row["fixed_steps"] == curve[window - 1 + means.index(max(means))][0]
        assert row["clr_steps_counted"] == (summary["steps"] if row["clr_steps"] is None else row["clr_steps"])
        # both arms validated on the same steps
        assert [s for s, _ in curve] == [s for s, _ in summary["curves"]["clr"][str(row["seed"])]]
        base, peak = row["bounds"]
        assert 1e-3 <= base <= peak <= 10.0  # inside the range test's sweep
    block = summary["paired"]["CLR steps - fixed steps"]
    assert block["diffs"] == [r["clr_steps_counted"] - r["fixed_steps"] for r in summary["rows"]]
    assert block["direction"] == "less" and summary["verdict"] == summary["paired_verdict"] == block["verdict"]


def test_clr_smoothing_by_hand(scripts):
    clr = scripts("fidelity_clr")
    curve = [(10, 0.5), (20, 0.9), (30, 0.7), (40, 0.8)]
    steps, means = zip(*clr.smoothed(curve, 2))
    assert steps == (20, 30, 40) and means == pytest.approx((0.7, 0.8, 0.75))
    assert clr.steps_to(clr.smoothed(curve, 2), 0.8) == 30  # the single 0.9 point is not the target
    assert clr.steps_to(clr.smoothed(curve, 2), 0.81) is None


def test_landscape_fast(scripts, capsys, tmp_path):
    png = tmp_path / "li.png"
    summary = scripts("fidelity_landscape").main(["--fast", "--plot", str(png)])
    assert png.stat().st_size > 1000
    out = capsys.readouterr().out
    assert _json_line(out)["benchmark"] == "fidelity_landscape"
    variants = {"resnet20", "resnet20_noshort", "resnet20_wide2", "resnet20_large_batch",
                "resnet20_large_batch_equal_epochs"}
    assert set(summary["stats"]) == variants == set(summary["rows"])
    for stats in summary["stats"].values():
        assert set(stats) == {"val_acc", "test_acc", "hessian_top_eigenvalue", "loss_rise_r0.5", "train_loss"}
        assert all(set(s) == {"mean", "std", "n"} and math.isfinite(s["mean"]) for s in stats.values())
    rows = summary["rows"]
    large, small = rows["resnet20_large_batch"][0], rows["resnet20"][0]
    assert large["batch"] > small["batch"]
    assert large["lr"] == pytest.approx(small["lr"] * large["batch"] / small["batch"])  # scaled linearly
    for seed in range(2):
        large, equal = rows["resnet20_large_batch"][seed], rows["resnet20_large_batch_equal_epochs"][seed]
        assert equal["epochs"] == summary["args"]["epochs"] and large["target_loss"] == rows["resnet20"][seed][
            "train_loss"]
        # the ladder stops at the first rung at the reference's training loss, or at its last rung
        losses = [rung["train_loss"] for rung in large["ladder"]]
        assert all(loss > large["target_loss"] for loss in losses[:-1])
        assert large["matched"] == (losses[-1] <= large["target_loss"])
        assert large["epochs"] == large["ladder"][-1]["factor"] * summary["args"]["epochs"]
        for row in (large, small):
            assert len(row["loss_rises_r0.5"]) == 2  # --directions 2 in --fast
            assert row["loss_rise_r0.5"] == pytest.approx(sum(row["loss_rises_r0.5"]) / 2)
            assert row["hessian_residual"] >= 0 and row["hessian_products"] >= 1
            assert isinstance(row["hessian_converged"], bool)
    assert set(summary["verdicts"]) == {"skip connections flatten", "width flattens", "small batches flatten",
                                        "small batches flatten (equal epochs)"}
    skip = summary["verdicts"]["skip connections flatten"]["paired"]["hessian_top_eigenvalue"]
    assert skip["diffs"] == pytest.approx([rows["resnet20_noshort"][s]["hessian_top_eigenvalue"]
                                           - rows["resnet20"][s]["hessian_top_eigenvalue"] for s in range(2)])
    assert skip["direction"] == "greater"
    for claim in summary["verdicts"].values():
        assert claim["verdict"] == claim["paired_verdict"] in ("shown", "contradicted", "inconclusive")
    assert "128 training / 300 validation / 1369 test" in summary["task"]  # a three-way split, test kept apart
    assert all(0.0 <= r[0]["test_acc"] <= 1.0 for r in rows.values())


@pytest.mark.parametrize(
    ("script", "argv", "match"),
    [
        ("fidelity_superconvergence", ["--budget", "8"], r"Expected `--budget` >= 16 .*got 8"),
        ("fidelity_superconvergence", ["--large-batch", "96"], r"Expected `--large-batch` above --batch-size \(64\) "
                                                               r"with budget x batch \(40960\) divisible .*got 96"),
        ("fidelity_superconvergence", ["--seeds", "3"], r"Expected at least 2 seeds .*got \[3\]"),
        ("fidelity_lr_range", ["--reference-length", "40"], r"Expected `--reference-length` to be one of "
                                                            r"--sweep-lengths \[20, 30, 50, 100\], got 40"),
        ("fidelity_clr", ["--steps", "100", "--cycles", "3"], r"Expected `--steps` to be a multiple of 2 x --cycles "
                                                              r"\(6\), got 100"),
        ("fidelity_landscape", ["--match-factors", "2", "4"], r"Expected `--match-factors` to start at 1 and "
                                                                r"increase, got \[2, 4\]"),
        ("fidelity_clr", ["--steps", "24", "--cycles", "1", "--val-every", "12"],
         r"Expected at least --smooth \(3\) evaluations in the budget, got 2"),
    ],
)
def test_bad_options_are_refused_naming_them(scripts, script, argv, match):
    with pytest.raises(SystemExit, match=match):
        scripts(script).main(argv)


def test_task_and_model_errors(scripts):
    fidelity = scripts("_fidelity")
    with pytest.raises(ValueError, match=r"Expected `train_size` in \[100, 1697\] .*got 50"):
        fidelity.digits_task(8, 50)
    with pytest.raises(ValueError, match=r"Expected a CIFAR ResNet depth 6n \+ 2 >= 8 .*got 21"):
        fidelity.make_model(21)
    assert fidelity.PiecewiseConstant.for_budget(0.4, 80).milestones == (50, 70)  # the paper's 50k/70k of 80k
    schedule = fidelity.PiecewiseConstant(0.35, (50_000, 70_000))
    assert [schedule(s) for s in (0, 49_999, 50_000, 70_000)] == pytest.approx([0.35, 0.35, 0.035, 0.0035])
