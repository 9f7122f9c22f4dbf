"""Vision test fixtures: a small procedural image folder, tiny model configs, single-threaded torch.

Tiny models on a shared 2-core machine run far faster with one OpenMP thread (two spinning threads under load
are ~100x slower), so in-process tests and the fairseq subprocesses started here use one thread.
"""
import pytest
import torch
from omegaconf import OmegaConf

TINY = dict(image_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=4, num_mask_patches=6,
            min_mask_patches_per_block=2, max_mask_patches_per_block=16, drop_path=0.0, average_top_k_layers=2,
            layer_scale_init_value=0.1, ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=10)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    from data2vec_plugin.cli.synthetic_images import make_image_folder
    root = tmp_path_factory.mktemp("images")
    make_image_folder(str(root), train_per_class=8, val_per_class=4, size=36, seed=0)
    return root


def tiny_cfg(**overrides):
    from data2vec_plugin.models.data2vec_vision import Data2VecVisionConfig
    return OmegaConf.structured(Data2VecVisionConfig(**{**TINY, **overrides}))


def tiny_model(**overrides):
    import data2vec_plugin  # noqa: F401
    from data2vec_plugin.models.data2vec_vision import Data2VecVisionModel
    return Data2VecVisionModel(tiny_cfg(**overrides))
