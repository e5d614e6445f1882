"""The table that ``benchmarks/gpu_check.sh`` prints last, made from its logs (one JSON line per benchmark;
``style_transfer.py`` prints one per configuration, and each is a row).

Usage: ``python benchmarks/gpu_table.py runs/gpu_check`` (Markdown on stdout). A step that failed or timed
out is a row that says so; a step that printed no JSON line is reported as such, never silently dropped.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def last_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    for line in reversed(path.read_text(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def all_json(path: Path, benchmark: str) -> list[dict]:
    """Every JSON line of ``benchmark`` in a log, in order (scripts that print one line per configuration)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("benchmark") == benchmark:
                out.append(data)
    return out


def style_transfer_rows(records: list[dict]) -> list[tuple[str, str]]:
    """One row per configuration of ``benchmarks/style_transfer.py`` (inference sizes, the training step)."""
    rows = []
    for d in records:
        h, w = d["size"]
        ms = d.get("ms_per_image") or d.get("ms_per_step")
        if d.get("part") == "inference":
            opts = "".join((" compile" if d["compile"] else "", " channels_last" if d["channels_last"] else ""))
            runner = ""
            if "runner" in ms:
                runner = f"; stylize runner ({d.get('runner', '?')}) {ms['runner']:.2f} ms"
            rows.append((f"TransformerNet {w}x{h} precision {d['precision']}{opts}",
                         f"ours {ms['ours']:.2f} ms/image, plain re-implementation {ms['plain']:.2f}: plain/ours "
                         f"{d['ratio_plain_ours']:.3f}x{runner}; max diff {d['max_abs_diff']['ours']:.1e}"))
        else:
            rows.append((f"style training step b{d['batch']} {w}px precision {d['precision']} (VGG random)",
                         f"ours {ms['ours']:.1f} ms/step, plain loop {ms['plain']:.1f}: ours/plain "
                         f"{d['ratio_ours_plain']:.3f}x; first losses differ by {d['first_loss_rel_diff']:.1e} "
                         f"(relative); the paper's 40k iterations: {ms['ours'] * 40 / 60:.0f} min"))
    return rows


def fmt(v, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def rows_for(name: str, log: Path) -> list[tuple[str, str]]:
    """(what, figures) rows for one step's log."""
    if name == "tests":
        text = log.read_text(errors="replace") if log.exists() else ""
        found = re.findall(r"(\d+ (?:passed|failed|skipped|errors?|deselected))", text.splitlines()[-1] if text else "")
        return [("pytest tests/gpu -m gpu", ", ".join(found) or "no summary line")]
    data = last_json(log)
    if data is None:
        return [(name, "no JSON line in the log")]
    bench = data.get("benchmark")
    if bench == "train_throughput":
        ms, ips = data["ms_per_step"], data["img_per_s"]
        return [(f"train {data['model']} b{data['batch_size']} {data['precision']} channels_last",
                 f"ours {ips['ours']:.0f} img/s ({ms['ours']:.1f} ms/step), bare {ips['bare']:.0f}, "
                 f"plain {ips['plain']:.0f}; ours/plain {data['ratio_ours_plain']:.3f}x, "
                 f"ours/bare {data['ratio_ours_bare']:.3f}x; every callback: "
                 + (f"{ips['callbacks']:.0f} img/s, callbacks/bare {data['ratio_callbacks_bare']:.3f}x, "
                    f"callbacks/ours {data['ratio_callbacks_ours']:.3f}x" if "callbacks" in ips else "not timed")
                 + f"; 10k iterations: {ms['ours'] * 10:.0f} s")]
    if bench == "landscape":
        spp = 1.0 / data["ours_points_per_s"]
        per_image = spp / data["images"]
        grid = "x".join(map(str, data["grid"]))
        opts = [o for o in ("fold_bn", "channels_last", "compile") if data.get(o)]
        label = f"{' bf16' if data['bf16'] else ' fp32'}{' + ' + ', '.join(opts) if opts else ''}"
        return [(f"surface {data['model']} {data['images']} imgs {grid}{label}",
                 f"ours {data['ours_points_per_s']:.2f} pts/s, naive {data['naive_points_per_s']:.2f}; "
                 f"speed-up {data['speedup']:.2f}x, efficiency {data['efficiency_vs_eval']:.0%}, "
                 f"max rel. loss diff {data.get('max_rel_loss_diff', float('nan')):.1e}; "
                 f"51x51 over 50k images: about {2601 * 50_000 * per_image / 60:.1f} min (extrapolated)")]
    if bench == "lr_range":
        out = []
        for problem in ("standard", "noisy"):
            if problem in data:
                p = data[problem]
                pts = "/".join(map(str, p["ours"]["points"])) + " vs " + "/".join(map(str, p["lightning"]["points"]))
                out.append((f"LR range test, {problem}",
                            f"sweep ours/Lightning {p['ratio_sweep']:.2f}x; points {pts}; suggestions ours "
                            f"{[fmt(v) for v in p['ours']['suggestion']]}, Lightning "
                            f"{[fmt(v) for v in p['lightning']['suggestion']]}"))
        return out
    if bench == "superconvergence":
        b, o = data["baseline"], data["1cycle"]
        ratio = data.get("ratio_to_baseline_steps")
        prec = data["config"].get("precision", "32-true")
        return [(f"1cycle (peak {data['config']['max_lr']:g}) vs step baseline, {len(data['seeds'])} seeds, {prec}",
                 f"baseline {b['steps']} steps -> {b['final_acc_mean']:.2%}; 1cycle {o['steps']} steps -> "
                 f"{o['final_acc_mean']:.2%}, reached baseline acc in {o['reached']}/{o['runs']}"
                 + ("" if ratio is None else f", at {ratio[0]:.3f}x the steps"))]
    if bench == "fidelity_superconvergence":
        halves, paired = data["halves"], list(data["paired"].values())
        return [(f"super-convergence fidelity, {data['model']}, n = {data['n']}",
                 f"fewer iterations {halves['fewer iterations']} ({100 * paired[0]['mean']:+.1f} points at "
                 f"B/8), better final accuracy {halves['better final accuracy']} ({100 * paired[1]['mean']:+.1f} at "
                 f"B); accuracy sweep precondition {'holds' if data['range_test']['precondition_holds'] else 'fails'}"
                 f"; {data['seconds']:.0f} s")]
    if bench == "clr_vs_fixed":  # its summary figures are "mean +- std" strings
        return [("CLR (triangular2) vs best fixed lr",
                 f"steps to fixed's final acc: fixed {data['fixed_steps']}, CLR {data['clr_steps_where_reached']} "
                 f"(reached {data['clr_reached']}); final acc % fixed {data['fixed_final_acc']}, CLR "
                 f"{data['clr_final_acc']}")]
    if bench == "style_transfer":
        return style_transfer_rows(all_json(log, bench))
    if bench == "demo":
        return [(f"demo ({data['precision']})",
                 f"{data['seconds']:.1f} s, val acc {data['val_acc']:.2%}, suggested lr {fmt(data['suggested_lr'])}")]
    return [(name, f"unknown benchmark {bench!r}")]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: python benchmarks/gpu_table.py LOG_DIR; got {argv!r}", file=sys.stderr)
        return 2
    root = Path(argv[0])
    status = root / "status.txt"
    if not status.exists():
        print(f"gpu_table: expected {status} (written by benchmarks/gpu_check.sh); it does not exist",
              file=sys.stderr)
        return 2
    env = (root / "env.txt").read_text().strip().splitlines() if (root / "env.txt").exists() else []
    print("| step | s | result |")
    print("| --- | --- | --- |")
    total = ""
    for line in status.read_text().splitlines():
        parts = line.split()
        if parts[0] == "total":
            total = parts[1]
            continue
        name, rc, seconds = parts[0], int(parts[1]), parts[2]
        state = "" if rc == 0 else ("TIMED OUT; " if rc in (124, 137) else f"FAILED (rc {rc}); ")
        for what, figures in rows_for(name, root / f"{name}.log"):
            print(f"| {what} | {seconds} | {state}{figures} |")
    print(f"\n{' · '.join(env)}; whole check {total} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
