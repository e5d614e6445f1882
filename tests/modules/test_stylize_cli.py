"""`lightning-papers stylize`: a checkpoint applied to a file or a folder, output at the (EXIF-oriented)
input's size, pixels equal to the network's own output, clear errors."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from lightning_papers.cli import main
from lightning_papers.data import ImageFolderDataModule, load_image
from lightning_papers.modules import FastStyleTransfer

pytestmark = pytest.mark.filterwarnings("ignore:.*random.*:UserWarning")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("style")
    torch.manual_seed(0)
    module = FastStyleTransfer(style_size=32, vgg_weights="random", sample_every_n_steps=0)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=root)
    trainer.fit(module, datamodule=ImageFolderDataModule(image_size=32, batch_size=2))
    path = root / "style.ckpt"
    trainer.save_checkpoint(path)
    return path, module.net.eval()


def _photo(path, size=(37, 23), orientation=None):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes())
    return path


def test_a_file_keeps_its_oriented_size_and_matches_the_network(checkpoint, tmp_path):
    ckpt, net = checkpoint
    src = _photo(tmp_path / "photo.jpg", size=(37, 23), orientation=6)  # rotated 90 degrees: shows 23 x 37
    out = tmp_path / "out.png"
    assert main(["stylize", "--ckpt", str(ckpt), "--input", str(src), "--output", str(out), "--device", "cpu"]) == 0
    with Image.open(out) as image:
        assert image.size == (23, 37)
        got = torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        expected = net(load_image(src)[None])[0].clamp(0, 1)
    assert torch.max(torch.abs(got - expected)) <= 1 / 255 + 1e-6


def test_a_folder_keeps_its_layout(checkpoint, tmp_path):
    ckpt, _ = checkpoint
    (tmp_path / "in" / "sub").mkdir(parents=True)
    _photo(tmp_path / "in" / "a.jpg")
    _photo(tmp_path / "in" / "sub" / "b.png", size=(16, 20))
    assert main(["stylize", "--ckpt", str(ckpt), "--input", str(tmp_path / "in"), "--output",
                 str(tmp_path / "out"), "--device", "cpu", "--precision", "bf16"]) == 0
    assert (tmp_path / "out" / "a.png").is_file()
    with Image.open(tmp_path / "out" / "sub" / "b.png") as image:
        assert image.size == (16, 20)


def test_errors(checkpoint, tmp_path):
    ckpt, _ = checkpoint
    with pytest.raises(FileNotFoundError, match=r"Expected --input to be an image file or a folder, got '.*nope'"):
        main(["stylize", "--ckpt", str(ckpt), "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")])
    (tmp_path / "in").mkdir()
    _photo(tmp_path / "in" / "a.jpg")
    with pytest.raises(ValueError, match=r"Expected --output to be a folder when --input is one, got '.*o\.png'"):
        main(["stylize", "--ckpt", str(ckpt), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o.png")])
    with pytest.raises(FileNotFoundError, match=r"Expected --ckpt to be a checkpoint file"):
        main(["stylize", "--ckpt", str(tmp_path / "x.ckpt"), "--input", str(tmp_path / "in" / "a.jpg"),
              "--output", str(tmp_path / "o.png")])
