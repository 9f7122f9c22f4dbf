"""State-dict upgrades for ``data2vec_text`` checkpoints (reference and plugin), as pure dict edits.

Mirrors the reference ``Data2VecTextModel.upgrade_state_dict_named`` (spec §4.6) without its crash on the
non-existent ``encoder.target_model`` (bug B2): legacy RoBERTa names are renamed, heads the model does not have are
dropped (or registered, with ``load_checkpoint_heads``), and pretraining-only entries (``encoder.regression_head``,
``encoder._ema``) are dropped when the model has no regression head / teacher (fine-tuning).
"""
import logging
from typing import Dict

logger = logging.getLogger(__name__)
HEADS = "classification_heads."


def rename_legacy_keys(state: Dict, prefix: str, has_regression_head: bool) -> None:
    """``decoder.*`` -> ``encoder.*``, ``.emb_layer_norm.`` -> ``.layernorm_embedding.``, ``.lm_head.`` ->
    ``.regression_head.`` (or drop regression-head keys when the model has none)."""
    for k in list(state):
        if k.startswith(prefix + "decoder"):
            state[prefix + "encoder" + k[len(prefix + "decoder"):]] = state.pop(k)
    for k in list(state):
        new = k.replace(".emb_layer_norm.", ".layernorm_embedding.")
        if has_regression_head:
            new = new.replace(".lm_head.", ".regression_head.")
        elif ".regression_head." in new:
            del state[k]
            continue
        if new != k:
            state[new] = state.pop(k)


def checkpoint_heads(state: Dict, prefix: str) -> Dict[str, tuple]:
    """Classification heads present in ``state``: name -> (num_classes, inner_dim)."""
    heads = {}
    for k in state:
        if k.startswith(prefix + HEADS) and k.endswith(".out_proj.weight"):
            name = k[len(prefix + HEADS):-len(".out_proj.weight")]
            heads[name] = (state[k].size(0), state[prefix + HEADS + name + ".dense.weight"].size(0))
    return heads


def reconcile_heads(model, state: Dict, prefix: str) -> None:
    """Register (``load_checkpoint_heads``) or drop checkpoint heads; fill heads missing from the checkpoint
    with the model's current weights; drop legacy LM heads when the model has classification heads."""
    current = model.classification_heads if model.classification_heads is not None else {}
    for name, (n_cls, inner) in checkpoint_heads(state, prefix).items():
        if model.cfg.load_checkpoint_heads:
            if name not in current:
                model.register_classification_head(name, n_cls, inner)
            continue
        head = current.get(name) if hasattr(current, "get") else None
        if head is None or (head.out_proj.out_features, head.dense.out_features) != (n_cls, inner):
            logger.warning(f"dropping classification head '{name}' from the checkpoint: "
                           f"{'absent from' if head is None else 'different size than'} the current model")
            for k in [k for k in state if k.startswith(f"{prefix}{HEADS}{name}.")]:
                del state[k]
    current = model.classification_heads if model.classification_heads is not None else {}
    if len(current) > 0:
        for k, v in current.state_dict().items():
            state.setdefault(prefix + HEADS + k, v)
        for k in [k for k in state if k.startswith((prefix + "encoder.lm_head.", prefix + "encoder.emb_head."))]:
            del state[k]


def drop_pretraining_entries(state: Dict, prefix: str, has_regression_head: bool, has_teacher: bool) -> None:
    for k in list(state):
        if k.startswith(prefix + "encoder.target_model.") or k.startswith(prefix + "encoder.lm_head."):
            del state[k]
        elif not has_regression_head and k.startswith(prefix + "encoder.regression_head."):
            del state[k]
    if not has_teacher:
        state.pop(prefix + "encoder._ema", None)
