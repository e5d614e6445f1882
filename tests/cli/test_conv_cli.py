"""The ``conv`` command line, run through ``main([...])`` and through a parent parser."""

from __future__ import annotations

import argparse
import json

from PIL import Image

from lightning_papers.cli.conv import add_subparser, main
from lightning_papers.conv_arithmetic.animation import CASES


def test_explain(capsys):
    assert main(["explain", "--i", "32", "--k", "3", "--s", "2", "--p", "1"]) == 0
    out = capsys.readouterr().out
    assert "Relationship 6" in out and "= 16" in out
    assert main(["explain", "--i", "3", "--k", "3", "--s", "2", "--p", "1", "--transposed", "--a", "1"]) == 0
    assert "Relationship 14" in capsys.readouterr().out
    assert main(["explain", "--i", "5", "--k", "3", "--pool"]) == 0
    assert "Relationship 7" in capsys.readouterr().out
    assert main(["explain", "--i", "8", "--k", "4", "--p", "same"]) == 0
    assert "same" in capsys.readouterr().out


def test_explain_invalid_returns_2(capsys):
    assert main(["explain", "--i", "2", "--k", "3"]) == 2
    assert "Expected a positive output size" in capsys.readouterr().err


def test_solve(capsys):
    assert main(["solve", "--i", "32", "--o", "16", "--k", "3", "--d", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["k", "s", "p", "d", "a", "rel", "ignored"]
    assert lines[1].split() == ["3", "2", "1", "1", "0", "6", "0"]
    assert main(["solve", "--i", "16", "--o", "32", "--transposed", "--k", "3", "--d", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:5] == ["3", "2", "1", "1", "1"]
    assert main(["solve", "--i", "4", "--o", "90", "--max-stride", "2"]) == 1


def test_trace(capsys):
    assert main(["trace", "--model", "resnet20", "--input-size", "3", "16", "16"]) == 0
    assert "receptive field: 81 px" in capsys.readouterr().out
    assert main(["trace", "--model", "resnet20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["receptive_field"] == [81, 81]
    assert main(["trace", "--model", "nope"]) == 2


def test_animate(tmp_path, capsys):
    out = tmp_path / "t.gif"
    assert main(["animate", "--kind", "transposed", "--i", "5", "--k", "3", "--s", "2", "--p", "1", "-o",
                 str(out)]) == 0
    with Image.open(out) as gif:
        assert gif.n_frames == 25
    assert main(["animate", "--kind", "dilation", "--i", "7", "-o", str(tmp_path / "d.gif")]) == 0
    with Image.open(tmp_path / "d.gif") as gif:
        assert gif.n_frames == 9
    assert main(["animate", "--all", str(tmp_path / "all")]) == 0
    assert len(list((tmp_path / "all").glob("*.gif"))) == len(CASES)


def test_add_subparser_on_a_parent_parser(capsys):
    parser = argparse.ArgumentParser(prog="lightning-papers")
    add_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["conv", "explain", "--i", "7", "--k", "3", "--d", "2"])
    assert args.command == "conv" and args.conv_handler(args) == 0
    assert "Relationship 15" in capsys.readouterr().out
