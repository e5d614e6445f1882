import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_papers.data import ImageFolderDataModule, load_image, sample_photos
from lightning_papers.data.images import ImageListDataset, find_images


def write_png(path, size=(40, 30), color=(255, 0, 0), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else color[0]).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    write_png(root / "a.png")
    write_png(root / "sub" / "b.PNG", color=(0, 255, 0))
    write_png(root / "sub" / "deeper" / "c.png", color=(0, 0, 255))
    write_png(root / "grey.png", mode="L", color=(128,))
    Image.new("RGB", (32, 32), (10, 20, 30)).save(root / "d.JPEG")
    (root / "notes.txt").write_text("not an image")
    return root


def test_find_images_is_recursive_and_case_insensitive(folder):
    names = sorted(p.name for p in find_images(folder))
    assert names == ["a.png", "b.PNG", "c.png", "d.JPEG", "grey.png"]


def test_batches_are_rgb_floats_of_the_crop_size(folder):
    dm = ImageFolderDataModule(folder, image_size=16, batch_size=2, val_fraction=0.2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean folder gives no warning
        dm.setup("fit")
    assert len(dm.train_set) == 4 and len(dm.val_set) == 1
    batches = list(dm.train_dataloader())
    assert [b.shape for b in batches] == [(2, 3, 16, 16), (2, 3, 16, 16)]
    assert all(b.dtype == torch.float32 and b.min() >= 0 and b.max() <= 1 for b in batches)
    (val,) = list(dm.val_dataloader())
    assert val.shape == (1, 3, 16, 16)


@pytest.mark.parametrize("val_resize", [True, False])
def test_validation_images_are_resized_or_cropped_at_their_own_resolution(tmp_path, val_resize):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "only.png")
    dm = ImageFolderDataModule(tmp_path, image_size=16, batch_size=1, val_resize=val_resize)
    dm.setup("fit")
    (val,) = list(dm.val_dataloader())
    native = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    if val_resize:  # the whole picture shrunk to a 16 px shorter side: not a crop of the original pixels
        assert not torch.allclose(val[0], native[:, 7:23, 12:28])
    else:  # the centre 16 x 16 of the original pixels, untouched
        torch.testing.assert_close(val[0], native[:, 7:23, 12:28])


def test_split_is_seeded_and_disjoint(folder):
    def split(seed):
        dm = ImageFolderDataModule(folder, image_size=8, val_fraction=0.4, seed=seed)
        dm.setup()
        return dm.train_set.sources, dm.val_set.sources

    train, val = split(0)
    assert split(0) == (train, val)
    assert len(val) == 2 and not set(train) & set(val) and len(train) + len(val) == 5


def test_corrupt_files_are_skipped_with_one_warning(folder):
    bad = folder / "sub" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not really a jpeg" * 10)
    dm = ImageFolderDataModule(folder, image_size=8, batch_size=8, val_fraction=0.2)
    with pytest.warns(UserWarning) as record:
        dm.setup("fit")
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert len(messages) == 1
    assert "Skipping 1 unreadable image file(s) of 6" in messages[0] and str(bad) in messages[0]
    assert dm.skipped == [bad]
    assert len(dm.train_set) + len(dm.val_set) == 5
    assert bad not in dm.train_set.sources + dm.val_set.sources
    assert next(iter(dm.train_dataloader())).shape == (4, 3, 8, 8)


def test_a_file_that_breaks_after_setup_is_replaced_not_fatal(folder, tmp_path):
    sources = find_images(folder)
    dataset = ImageListDataset(sources, transform=lambda t: t[:, :8, :8])
    sources[0].write_bytes(b"gone bad")
    with pytest.warns(UserWarning, match=r"Skipping unreadable image .*a\.png"):
        first = dataset[0]
    torch.testing.assert_close(first, dataset[1])  # the next readable image instead
    assert len(dataset) == len(sources)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes())
    assert load_image(path).shape == (3, 40, 20)


def test_empty_and_missing_folders_are_errors(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.md").write_text("no images here")
    with pytest.raises(ValueError, match=rf"Expected image files .*under '{empty}', found 0 file\(s\)"):
        ImageFolderDataModule(empty).setup("fit")
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=rf"'{missing}' is not a directory"):
        ImageFolderDataModule(missing).setup("fit")


def test_only_corrupt_files_is_an_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="Skipping 1"), pytest.raises(ValueError, match="none readable"):
        ImageFolderDataModule(tmp_path).setup()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 0}, r"Expected `image_size` to be a positive integer, got 0"),
        ({"batch_size": 2.5}, r"Expected `batch_size` to be a positive integer, got 2.5"),
        ({"num_workers": -1}, r"Expected `num_workers` to be an integer >= 0, got -1"),
        ({"val_fraction": 1.0}, r"Expected `val_fraction` to be a number in \[0, 1\), got 1.0"),
        ({"scale": (0.5, 0.1)}, r"Expected `scale` to be \(low, high\) with 0 < low <= high <= 1, got \(0.5, 0.1\)"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageFolderDataModule(**kwargs)


def test_loaders_before_setup_say_so():
    with pytest.raises(RuntimeError, match=r"has no training data: call `setup\(\)` first"):
        ImageFolderDataModule().train_dataloader()


def test_single_image_serves_both_splits_and_no_validation_is_possible(tmp_path):
    write_png(tmp_path / "only.png")
    dm = ImageFolderDataModule(tmp_path, image_size=8)
    dm.setup()
    assert dm.train_set.sources == dm.val_set.sources
    write_png(tmp_path / "second.png")
    dm = ImageFolderDataModule(tmp_path, image_size=8, val_fraction=0.0)
    dm.setup()
    assert len(dm.train_set) == 2 and dm.val_dataloader() == []


def test_sample_photos_are_rgb_uint8():
    photos = sample_photos()
    names = [name for name, _ in photos]
    assert {"astronaut", "chelsea", "coffee", "rocket"} <= set(names)
    for _, image in photos:
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_default_data_module_uses_the_skimage_photographs():
    torch.manual_seed(0)
    dm = ImageFolderDataModule(image_size=32, batch_size=3)
    dm.prepare_data()
    dm.setup("fit")
    n = len(sample_photos())
    assert len(dm.train_set) + len(dm.val_set) == n and len(dm.val_set) >= 1
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    assert 0 <= batch.min() and batch.max() <= 1 and batch.std() > 0.05  # real photographs, not blank
    val = next(iter(dm.val_dataloader()))
    assert val.shape[1:] == (3, 32, 32)


def test_load_image_from_arrays_paths_and_sizes(tmp_path):
    rgb = np.zeros((10, 20, 3), dtype=np.uint8)
    rgb[:, :, 1] = 255
    t = load_image(rgb)
    assert t.shape == (3, 10, 20) and t.dtype == torch.float32
    assert torch.equal(t[1], torch.ones(10, 20)) and torch.equal(t[0], torch.zeros(10, 20))
    grey = np.full((6, 4), 0.5, dtype=np.float32)
    torch.testing.assert_close(load_image(grey), torch.full((3, 6, 4), 0.5))  # floats kept, not quantised
    rgba = np.full((5, 5, 4), 255, dtype=np.uint8)
    assert load_image(rgba).shape == (3, 5, 5)
    assert load_image(rgb, size=5).shape == (3, 5, 10)  # shorter side
    assert load_image(rgb, size=(7, 3)).shape == (3, 7, 3)
    path = write_png(tmp_path / "img.png", size=(12, 9), color=(0, 0, 255))
    t = load_image(path)
    assert t.shape == (3, 9, 12) and torch.equal(t[2], torch.ones(9, 12))
    assert torch.equal(load_image(str(path)), t) and torch.equal(load_image(Image.open(path)), t)


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.png' does not exist"):
        load_image(tmp_path / "nothing.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"Could not read an image from .*bad\.png"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"Expected an image of shape .*got \(4, 4, 5\)"):
        load_image(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"Expected `size` to be a positive int or an \(H, W\) pair, got 0"):
        load_image(np.zeros((4, 4, 3), dtype=np.uint8), size=0)
