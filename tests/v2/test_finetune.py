"""Fine-tuning from data2vec 2.0 (data2vec_multi) checkpoints: image classification (mean pooling + LN + linear
head, layer-wise lr decay) and sentence classification with fairseq's sentence_prediction task. Tiny pretraining
checkpoints are produced here with examples/v2/{image,text}_tiny.yaml; fine-tuning runs are subprocesses."""
import os
import random
import re
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from data2vec_plugin.cli.demo_v2 import WORDS, make_data, train_cmd

from ..conftest import REPO, hydra_train, run_cli

EX = REPO / "examples" / "v2"


def _pretrain(kind, root):
    data = make_data(kind, str(root / "data"))
    run_cli(train_cmd(kind, data, str(root), ["optimization.max_update=4", "checkpoint.save_interval_updates=4",
                                              "dataset.disable_validation=true"]), root)
    return data, root / f"{kind}_ckpt" / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def image_pre(tmp_path_factory):
    return _pretrain("image", tmp_path_factory.mktemp("v2img"))


@pytest.fixture(scope="module")
def text_pre(tmp_path_factory):
    return _pretrain("text", tmp_path_factory.mktemp("v2txt"))


def _student(ckpt, modality):
    from data2vec_plugin.models.data2vec_multi_classification_backbone import backbone_state
    return backbone_state(torch.load(ckpt, weights_only=False)["model"], modality)


def test_image_classifier_restores_student_and_tags_layer_decay(image_pre):
    from data2vec_plugin.models.data2vec_multi_image_classification import (
        Data2VecMultiImageClassificationConfig, Data2VecMultiImageClassifier)
    _, ckpt = image_pre
    cfg = OmegaConf.structured(Data2VecMultiImageClassificationConfig(model_path=str(ckpt), num_classes=4,
                                                                      layer_decay=0.5, drop_path=0.2))
    clf = Data2VecMultiImageClassifier(cfg)
    student = _student(ckpt, "IMAGE")
    mine = clf.model.state_dict()
    assert set(mine) == set(student) and all(torch.equal(mine[k], v) for k, v in student.items())
    assert clf.model.teacher is None and clf.model.modality_encoders["IMAGE"].decoder is None
    assert not any("decoder" in k or "_ema" in k for k in clf.state_dict())
    scale = {n: p.optim_overrides["optimizer"].get("lr_scale", 1.0) for n, p in clf.named_parameters()}
    # 1 prenet + 2 shared blocks -> L = 4: prenet 0.5^3, blocks 0.5^2 / 0.5^1, patch embedding 0.5^4, head 1
    assert scale["model.modality_encoders.IMAGE.context_encoder.blocks.0.attn.qkv.weight"] == 0.5 ** 3
    assert scale["model.blocks.0.attn.qkv.weight"] == 0.25 and scale["model.blocks.1.mlp.fc1.weight"] == 0.5
    assert scale["model.modality_encoders.IMAGE.local_encoder.proj.weight"] == 0.5 ** 4
    assert scale["head.weight"] == 1.0 and scale["fc_norm.weight"] == 1.0
    assert clf.head.bias.optim_overrides["optimizer"]["weight_decay_scale"] == 0
    assert clf.model.blocks[-1].drop_path.p == pytest.approx(0.2)
    clf.eval()
    assert clf(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_image_finetune_run_and_reload(image_pre, tmp_path):
    data, ckpt = image_pre
    pre = tmp_path / "pre.pt"
    shutil.copy(ckpt, pre)
    proc = hydra_train(EX, "finetune_image_tiny", [f"task.data={data}", f"model.model_path={pre}",
                                                   f"checkpoint.save_dir={tmp_path}/ft", "optimization.max_update=8",
                                                   "dataset.validate_interval=1", "dataset.batch_size=8",
                                                   "common.log_interval=2"], tmp_path)
    log = proc.stdout + proc.stderr
    accs = [float(a) for a in re.findall(r"valid on 'val' subset .*?\| accuracy ([0-9.]+)", log)]
    assert accs and all(0 <= a <= 100 for a in accs), log[-3000:]
    os.remove(pre)  # the fine-tuned checkpoint embeds the pretraining config: reload without the file
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    models, cfg, _ = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "ft" / "checkpoint_last.pt")])
    clf = models[0].eval()
    assert cfg.model.pretrained_model_args.model._name == "data2vec_multi"
    assert clf.model.teacher is None and clf.model.modality_encoders["IMAGE"].decoder is None
    saved = torch.load(tmp_path / "ft" / "checkpoint_last.pt", weights_only=False)["model"]
    assert not any(k.startswith("model._ema") or ".decoder." in k for k in saved) and "head.weight" in saved
    with torch.no_grad():
        logits = clf(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()


def _glue_like(pre_data, dest, n_train=64, n_valid=16):
    """input0/ (pretraining dict) + label/: label 1 iff the sentence contains 'teacher'."""
    from fairseq.data import Dictionary, indexed_dataset
    d = Dictionary.load(os.path.join(pre_data, "dict.txt"))
    labels = Dictionary()
    for s in ("0", "1"):
        labels.add_symbol(s)
    rng = random.Random(1)
    for sub, dic in (("input0", d), ("label", labels)):
        os.makedirs(dest / sub, exist_ok=True)
        shutil.copy(os.path.join(pre_data, "dict.txt"), dest / sub / "dict.txt") if sub == "input0" else \
            dic.save(str(dest / sub / "dict.txt"))
    for split, n in (("train", n_train), ("valid", n_valid)):
        b_in = indexed_dataset.make_builder(str(dest / "input0" / f"{split}.bin"), impl="mmap", vocab_size=len(d))
        b_lb = indexed_dataset.make_builder(str(dest / "label" / f"{split}.bin"), impl="mmap", vocab_size=len(labels))
        for _ in range(n):
            words = rng.sample(WORDS, rng.randint(4, 10))
            b_in.add_item(torch.IntTensor([d.index(w) for w in words] + [d.eos()]))
            b_lb.add_item(torch.IntTensor([labels.index(str(int("teacher" in words))), labels.eos()]))
        b_in.finalize(str(dest / "input0" / f"{split}.idx"))
        b_lb.finalize(str(dest / "label" / f"{split}.idx"))
    return dest


@pytest.mark.parametrize("layout", ["tokens", "d2v2_multi"])
def test_text_finetune_run_and_reload(text_pre, tmp_path, layout):
    pre_data, ckpt = text_pre
    data = _glue_like(pre_data, tmp_path / "glue")
    pre = tmp_path / "pre.pt"
    shutil.copy(ckpt, pre)
    extra = ["+task.d2v2_multi=true"] if layout == "d2v2_multi" else []
    proc = hydra_train(EX, "finetune_text_tiny", [f"task.data={data}", f"model.model_path={pre}",
                                                  f"checkpoint.save_dir={tmp_path}/ft", "optimization.max_update=6",
                                                  "lr_scheduler.total_num_update=6", "common.log_interval=2"] + extra,
                       tmp_path)
    log = proc.stdout + proc.stderr
    accs = [float(a) for a in re.findall(r"valid on 'valid' subset .*?\| accuracy ([0-9.]+)", log)]
    assert accs and all(0 <= a <= 100 for a in accs), log[-3000:]
    student = _student(pre, "TEXT")
    os.remove(pre)
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "ft" / "checkpoint_last.pt")],
                                                                      arg_overrides={"data": str(data)})
    clf = models[0].eval()
    assert type(clf).__name__ == "Data2VecMultiTextClassifier"
    assert cfg.model.pretrained_model_args.model._name == "data2vec_multi"
    assert clf.model.teacher is None and clf.model.modality_encoders["TEXT"].decoder is None
    saved = torch.load(tmp_path / "ft" / "checkpoint_last.pt", weights_only=False)["model"]
    assert not any("_ema" in k or ".decoder." in k for k in saved)
    assert "classification_heads.sentence_classification_head.out_proj.weight" in saved
    # restored from the pretraining student, then fine-tuned (6 updates move the weights a little)
    emb = "model.modality_encoders.TEXT.local_encoder.embed_tokens.weight"
    assert saved[emb].shape == student[emb[len("model."):]].shape
    assert torch.allclose(saved[emb], student[emb[len("model."):]], atol=0.01)
    tokens = torch.tensor([[0] + [task.source_dictionary.index(w) for w in ("the", "teacher", "sees")] + [2]])
    out = clf.predict(tokens)
    assert out.shape == (1, 2) and torch.allclose(out.exp().sum(-1), torch.ones(1))


def test_text_classifier_rejects_other_dictionary(text_pre, tmp_path):
    from fairseq.data import Dictionary
    from data2vec_plugin.models.data2vec_multi_text_classification import (
        Data2VecMultiTextClassificationConfig, Data2VecMultiTextClassifier)
    from .helpers import FakeTask
    _, ckpt = text_pre
    d = Dictionary()
    for i in range(7):
        d.add_symbol(f"w{i}")
    cfg = OmegaConf.structured(Data2VecMultiTextClassificationConfig(model_path=str(ckpt), max_positions=32))
    with pytest.raises(ValueError, match="pretraining dict.txt"):
        Data2VecMultiTextClassifier.build_model(cfg, FakeTask(d))
