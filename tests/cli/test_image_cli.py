"""`lightning-papers stylize` and `super-resolve`: a checkpoint applied to a file or a folder, output at the
(EXIF-oriented) input's size or factor times it, pixels equal to the module's own output, clear errors, and the
fast-path options (fallback to eager when torch.compile fails)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_papers.cli import image as image_cli
from lightning_papers.cli import main
from lightning_papers.data import load_image

pytestmark = pytest.mark.filterwarnings("ignore:.*random.*:UserWarning")


def _photo(path, size=(37, 23), orientation=None):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes())
    return path


def _read(path):
    with Image.open(path) as image:
        return image.size, torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255


def test_a_file_keeps_its_oriented_size_and_matches_the_network(style_checkpoint, tmp_path):
    ckpt, module = style_checkpoint
    src = _photo(tmp_path / "photo.jpg", size=(37, 23), orientation=6)  # rotated 90 degrees: shows 23 x 37
    out = tmp_path / "out.png"
    assert main(["stylize", "--ckpt", str(ckpt), "--input", str(src), "--output", str(out), "--device", "cpu"]) == 0
    size, got = _read(out)
    assert size == (23, 37)
    with torch.no_grad():
        expected = module.net(load_image(src)[None])[0].clamp(0, 1)
    assert torch.max(torch.abs(got - expected)) <= 1 / 255 + 1e-6


def test_super_resolve_is_factor_times_the_oriented_size_and_matches_the_module(sr_checkpoint, tmp_path):
    ckpt, module = sr_checkpoint
    src = _photo(tmp_path / "small.jpg", size=(13, 9), orientation=8)  # rotated 270 degrees: shows 9 x 13
    assert main(["super-resolve", "--ckpt", str(ckpt), "--input", str(src), "--output", str(tmp_path / "big"),
                 "--device", "cpu"]) == 0
    size, got = _read(tmp_path / "big" / "small.png")  # --output without a suffix: a folder
    assert size == (4 * 9, 4 * 13)
    lr = load_image(src)[None]
    with torch.no_grad():
        expected = module(lr)[0]  # eval mode: bicubic + the network's correction, clamped
        bicubic = module.bicubic(lr)[0]
    assert torch.max(torch.abs(got - expected)) <= 1 / 255 + 1e-6
    assert torch.max(torch.abs(got - bicubic)) > 10 / 255  # the network's correction is in the picture


def test_a_folder_keeps_its_layout(style_checkpoint, sr_checkpoint, tmp_path, capsys):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    _photo(tmp_path / "in" / "a.jpg")
    _photo(tmp_path / "in" / "sub" / "b.png", size=(16, 20))
    assert main(["stylize", "--ckpt", str(style_checkpoint[0]), "--input", str(tmp_path / "in"), "--output",
                 str(tmp_path / "out"), "--device", "cpu", "--precision", "bf16"]) == 0
    assert (tmp_path / "out" / "a.png").is_file()
    assert _read(tmp_path / "out" / "sub" / "b.png")[0] == (16, 20)
    assert "FastStyleTransfer: 100%" in capsys.readouterr().err  # a folder gets a progress bar
    assert main(["super-resolve", "--ckpt", str(sr_checkpoint[0]), "--input", str(tmp_path / "in"), "--output",
                 str(tmp_path / "sr"), "--device", "cpu", "--fast"]) == 0
    assert _read(tmp_path / "sr" / "a.png")[0] == (4 * 37, 4 * 23)
    assert _read(tmp_path / "sr" / "sub" / "b.png")[0] == (4 * 16, 4 * 20)


@pytest.mark.parametrize("command", ["stylize", "super-resolve"])
def test_errors(style_checkpoint, command, tmp_path):
    ckpt, _ = style_checkpoint
    with pytest.raises(FileNotFoundError, match=r"Expected --input to be an image file or a folder, got '.*nope'"):
        main(["--debug", command, "--ckpt", str(ckpt), "--input", str(tmp_path / "nope"), "--output",
              str(tmp_path / "o")])
    (tmp_path / "in").mkdir()
    _photo(tmp_path / "in" / "a.jpg")
    with pytest.raises(ValueError, match=r"Expected --output to be a folder when --input is one, got '.*o\.png'"):
        main(["--debug", command, "--ckpt", str(ckpt), "--input", str(tmp_path / "in"), "--output",
              str(tmp_path / "o.png")])
    with pytest.raises(FileNotFoundError, match=r"Expected --ckpt to be a checkpoint file, got '.*x\.ckpt'"):
        main(["--debug", command, "--ckpt", str(tmp_path / "x.ckpt"), "--input", str(tmp_path / "in" / "a.jpg"),
              "--output", str(tmp_path / "o.png")])
    with pytest.raises(ValueError, match=r"Expected --device to be auto, cpu, cuda or cuda:N, got 'gpu0'"):
        main(["--debug", command, "--ckpt", str(ckpt), "--input", str(tmp_path / "in" / "a.jpg"), "--output",
              str(tmp_path / "o.png"), "--device", "gpu0"])
    with pytest.raises(SystemExit):  # argparse: invalid choice
        main([command, "--ckpt", str(ckpt), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"),
              "--precision", "8"])


def test_a_checkpoint_of_the_other_kind_is_named(style_checkpoint, sr_checkpoint, tmp_path):
    src = _photo(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match=r"Expected --ckpt to be a FastStyleTransfer checkpoint, but '.*sr\.ckpt' is "
                                         r"a SuperResolution checkpoint \(apply it with `lightning-papers super-re"):
        main(["--debug", "stylize", "--ckpt", str(sr_checkpoint[0]),
              "--input", str(src), "--output", str(tmp_path / "o.png")])
    with pytest.raises(ValueError, match=r"Expected --ckpt to be a SuperResolution checkpoint, but '.*style\.ckpt' "
                                         r"is a FastStyleTransfer checkpoint \(apply it with `lightning-papers styl"):
        main(["--debug", "super-resolve", "--ckpt", str(style_checkpoint[0]), "--input", str(src), "--output",
              str(tmp_path / "o.png")])
    assert not (tmp_path / "o.png").exists()


def test_cuda_graphs_need_cuda(style_checkpoint, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the CPU-only error cannot be shown with --device auto")
    src = _photo(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match=r"Expected a CUDA device with `cuda_graphs=True`, got device 'cpu'"):
        main(["--debug", "stylize", "--ckpt", str(style_checkpoint[0]), "--input", str(src), "--output",
              str(tmp_path / "o.png"), "--cuda-graphs"])


def test_a_failing_compile_falls_back_to_eager_with_one_warning(style_checkpoint, tmp_path, monkeypatch):
    ckpt, module = style_checkpoint
    (tmp_path / "in").mkdir()
    for name, size in (("a.png", (12, 9)), ("b.png", (10, 14))):
        _photo(tmp_path / "in" / name, size=size)

    def broken_compile(*args, **kwargs):
        def compiled(*a, **k):
            raise RuntimeError("no C compiler found\nmore detail")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed \(RuntimeError: no C compiler found\); running "
                                            r"the network eagerly") as record:
        assert main(["stylize", "--ckpt", str(ckpt), "--input", str(tmp_path / "in"), "--output",
                     str(tmp_path / "out"), "--device", "cpu", "--compile"]) == 0
    assert sum("torch.compile failed" in str(w.message) for w in record) == 1  # once, not once per image
    _, got = _read(tmp_path / "out" / "b.png")
    with torch.no_grad():
        expected = module.net(load_image(tmp_path / "in" / "b.png")[None])[0].clamp(0, 1)
    assert torch.max(torch.abs(got - expected)) <= 1 / 255 + 1e-6


def test_stylize_files_stays_importable(style_checkpoint, tmp_path):
    src = _photo(tmp_path / "a.jpg", size=(9, 11))
    out = image_cli.stylize_files(style_checkpoint[0], [src], [tmp_path / "x" / "a.png"], device="cpu")
    assert out == [tmp_path / "x" / "a.png"] and _read(out[0])[0] == (9, 11)
    with pytest.raises(ValueError, match=r"Expected `precision` to be one of \('32', 'bf16', '16'\), got '64'"):
        image_cli.stylize_files(style_checkpoint[0], [src], [tmp_path / "y.png"], device="cpu", precision="64")
