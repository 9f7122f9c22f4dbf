"""Every example yaml composes against fairseq's schema + our dataclasses; every plugin field is documented."""
import dataclasses
from pathlib import Path

import pytest

from .conftest import PLUGIN_DIR, REPO

YAMLS = sorted(p for p in (REPO / "examples").rglob("*.yaml"))


def compose(path: Path):
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from hydra import compose as hcompose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    import data2vec_plugin  # noqa: F401

    GlobalHydra.instance().clear()
    hydra_init(path.stem)  # fairseq-hydra-train validates the yaml against FairseqConfig under its name
    with initialize_config_dir(config_dir=str(path.parent), version_base=None):
        cfg = hcompose(config_name=path.stem, overrides=[f"common.user_dir={PLUGIN_DIR}", "task.data=/nonexistent"])
    with open(path) as f:
        if "common:" not in f.read():
            pytest.skip("fragment, not a full config")
    add_defaults(cfg)
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


@pytest.mark.parametrize("path", YAMLS, ids=[str(p.relative_to(REPO)) for p in YAMLS])
def test_example_config_composes_and_builds(path):
    from fairseq import tasks
    cfg = compose(path)
    assert cfg.model._name and cfg.task._name
    if "audio" in str(path.parent.name) and "pretrain" in path.stem:  # needs no data files to build
        model = tasks.setup_task(cfg.task).build_model(cfg.model)
        assert sum(p.numel() for p in model.parameters()) > 0


def _plugin_dataclasses():
    import data2vec_plugin  # noqa: F401
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
    from fairseq.models import MODEL_DATACLASS_REGISTRY
    from fairseq.tasks import TASK_DATACLASS_REGISTRY
    out = []
    for reg in (MODEL_DATACLASS_REGISTRY, TASK_DATACLASS_REGISTRY, CRITERION_DATACLASS_REGISTRY):
        for name, dc in reg.items():
            if dc.__module__.startswith("data2vec_plugin"):
                out.append((name, dc))
    return out


def test_every_plugin_field_has_help():
    missing = []
    for name, dc in _plugin_dataclasses():
        own = {a for c in dc.__mro__ if c.__module__.startswith("data2vec_plugin")
               for a in c.__dict__.get("__annotations__", {})}
        for f in dataclasses.fields(dc):
            if f.name.startswith("_") or f.name not in own:  # fields inherited from fairseq are documented there
                continue
            if not f.metadata.get("help"):
                missing.append(f"{name}.{f.name}")
    assert missing == []


def test_plugin_names_do_not_shadow_fairseq_core():
    core_tasks = {"audio_pretraining", "masked_lm", "sentence_prediction", "audio_finetuning", "translation"}
    core_criterions = {"model", "cross_entropy", "ctc", "sentence_prediction"}
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.tasks import TASK_REGISTRY
    for name, cls in TASK_REGISTRY.items():
        if cls.__module__.startswith("data2vec_plugin"):
            assert name not in core_tasks
    for name, cls in CRITERION_REGISTRY.items():
        if cls.__module__.startswith("data2vec_plugin"):
            assert name not in core_criterions
