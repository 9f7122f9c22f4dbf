"""Image folder dataset: augmentation shapes/ranges, reproducibility, image modes, and every bad-image case."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from data2vec_plugin.data.image_folder import ImageFolderDataset, ImageInputError, load_rgb
from data2vec_plugin.data.image_transforms import (IMAGENET_MEAN, IMAGENET_STD, beit_pretraining_transform,
                                                   classification_transform)
from data2vec_plugin.masking.block import BlockMaskSpec
from data2vec_plugin.tasks.image_pretraining import split_dir

SPEC = BlockMaskSpec((4, 4), 6, 2, 16, image_size=32)


def value_bounds():
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (0 - mean) / std, (1 - mean) / std


def check_range(x):
    lo, hi = value_bounds()
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    assert (x >= lo - 1e-5).all() and (x <= hi + 1e-5).all()


def test_pretraining_augmentation_shapes_ranges_and_reproducibility(image_folder):
    ds = ImageFolderDataset(str(image_folder / "train"), beit_pretraining_transform(32), False, SPEC, seed=3)
    items = [ds[i] for i in range(6)]
    for it in items:
        assert it["img"].shape == (3, 32, 32) and "label" not in it
        check_range(it["img"])
    assert torch.equal(ds[2]["img"], items[2]["img"])  # function of (seed, epoch, id)
    assert not torch.equal(items[0]["img"], ds.transform(load_rgb(ds.files[0])))  # random, not identity
    ds.set_epoch(2)
    assert not torch.equal(ds[2]["img"], items[2]["img"])  # new epoch -> new augmentation
    epoch2 = ds.collater(items)["net_input"]["mask_indices"]
    ds.set_epoch(1)
    batch = ds.collater(items)
    assert batch["net_input"]["img"].shape == (6, 3, 32, 32)
    m = batch["net_input"]["mask_indices"]
    assert m.dtype == torch.bool and m.shape == (6, 16) and (m.sum(1) == 6).all()
    assert not torch.equal(m, epoch2)  # new epoch -> new masks
    assert torch.equal(ds.collater([items[3]])["net_input"]["mask_indices"][0], m[3])


def test_classification_transforms(image_folder):
    tr = ImageFolderDataset(str(image_folder / "train"), classification_transform(32, True, auto_augment=
                            "rand-m9-mstd0.5-inc1", reprob=0.25), True, seeded_transform=False)
    va = ImageFolderDataset(str(image_folder / "val"), classification_transform(32, False), True,
                            seeded_transform=False, shuffle=False)
    assert tr.classes == va.classes == ["checker", "hstripes", "rings", "vstripes"]
    b = va.collater([va[i] for i in range(len(va))])
    assert b["net_input"]["img"].shape == (16, 3, 32, 32) and "mask_indices" not in b["net_input"]
    assert b["net_input"]["label"].tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    check_range(b["net_input"]["img"])
    assert tr[0]["img"].shape == (3, 32, 32)  # random erasing may leave the normalised range
    assert (va.ordered_indices() == np.arange(len(va))).all()


def _write(path, mode, size, **save):
    if mode in ("I;16",):
        img = Image.fromarray((np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 997 % 65535)
                              .astype(np.uint16))
    else:
        img = Image.new(mode, size)
        if mode == "P":
            img.putpalette([i % 256 for i in range(768)])
    img.save(path, **save)


@pytest.mark.parametrize("name,mode,size,save", [
    ("gray.png", "L", (40, 30), {}), ("gray16.png", "I;16", (20, 20), {}), ("rgba.png", "RGBA", (33, 40), {}),
    ("palette.png", "P", (40, 40), {}), ("palette_t.png", "P", (40, 40), {"transparency": 0}),
    ("la.png", "LA", (40, 40), {}), ("cmyk.jpg", "CMYK", (40, 40), {}), ("bilevel.bmp", "1", (40, 40), {}),
    ("tiny.png", "RGB", (1, 1), {}), ("thin.png", "RGB", (2, 50), {}), ("gray.jpg", "L", (5, 3), {}),
])
def test_image_modes_and_tiny_images(tmp_path, name, mode, size, save):
    (tmp_path / "a").mkdir()
    _write(tmp_path / "a" / name, mode, size, **save)
    assert load_rgb(str(tmp_path / "a" / name)).mode == "RGB"
    for ds in (ImageFolderDataset(str(tmp_path), beit_pretraining_transform(32), False, SPEC),
               ImageFolderDataset(str(tmp_path), classification_transform(32, False), True, seeded_transform=False)):
        x = ds[0]["img"]
        assert x.shape == (3, 32, 32)
        check_range(x)


def _bad_folder(tmp_path):
    d = tmp_path / "train" / "cls"
    d.mkdir(parents=True)
    Image.new("RGB", (40, 40), (10, 200, 30)).save(d / "good.png")
    (d / "garbage.jpg").write_bytes(os.urandom(300))
    (d / "text.png").write_text("this is not an image")
    (d / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (64, 64)).save(d / "full.png")
    (d / "truncated.png").write_bytes((d / "full.png").read_bytes()[:60])
    (d / "full.png").unlink()
    (d / "notes.txt").write_text("ignored: not an image extension")
    return tmp_path / "train"


@pytest.mark.parametrize("bad", ["garbage.jpg", "text.png", "empty.jpg", "truncated.png"])
def test_bad_image_error_names_the_file(tmp_path, bad):
    root = _bad_folder(tmp_path)
    ds = ImageFolderDataset(str(root), beit_pretraining_transform(32), False, SPEC)
    assert len(ds) == 5  # notes.txt ignored
    idx = [os.path.basename(f) for f in ds.files].index(bad)
    with pytest.raises(ImageInputError, match=bad.replace(".", r"\.")) as e:
        ds[idx]
    assert "skip_invalid_images" in str(e.value)


def test_bad_images_skipped_and_counted(tmp_path):
    root = _bad_folder(tmp_path)
    ds = ImageFolderDataset(str(root), beit_pretraining_transform(32), False, SPEC, skip_invalid=True)
    assert [os.path.basename(f) for f in ds.files] == ["good.png"]
    assert sum(ds.skipped.values()) == 4
    assert ds.collater([ds[0]])["net_input"]["img"].shape == (1, 3, 32, 32)


def test_skip_at_load_time(tmp_path):
    root = _bad_folder(tmp_path)
    ds = ImageFolderDataset(str(root), beit_pretraining_transform(32), False, SPEC, skip_invalid=True)
    ds.files.append(str(root / "cls" / "truncated.png"))  # passes no probe: simulate a late decode failure
    items = [ds[0], ds[1]]
    assert items[1]["img"] is None and ds.skipped["unreadable at load time"] == 1
    assert ds.collater(items)["id"].tolist() == [0]
    assert ds.collater([items[1]]) == {}


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ImageFolderDataset(str(tmp_path / "missing"), None, False)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ImageInputError, match="no image files"):
        ImageFolderDataset(str(tmp_path / "empty"), None, True)
    (tmp_path / "d" / "train").mkdir(parents=True)
    (tmp_path / "d" / "val").mkdir()
    assert split_dir(str(tmp_path / "d"), "valid").endswith("val")
    with pytest.raises(FileNotFoundError, match="test"):
        split_dir(str(tmp_path / "d"), "test")
    assert split_dir(str(tmp_path / "empty"), "train") == str(tmp_path / "empty")  # flat folder
