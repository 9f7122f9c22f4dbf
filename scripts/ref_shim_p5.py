

# --------------------------------------------------------------------------- P5
# (appended to a temp copy of the shared shim by scripts/make_reference_checkpoints.sh and bench/)
# torch 2.14 + wav2vec2 pos_conv_depth=1: the pos_conv uses torch.nn.utils.weight_norm, whose computed
# `weight` attribute is a NON-LEAF tensor right after construction; v1 data2vec_audio creates its
# teacher with EMAModule -> copy.deepcopy(encoder) in set_num_updates (first training step, and in
# load_model_ensemble_and_task before load_state_dict), which then raises
#   RuntimeError: Only Tensors created explicitly by the user (graph leaves) support the deepcopy
#   protocol at the moment. ...
# Fix: before EMAModule copies a module, re-materialise weight-norm weights detached (numerically
# identical; the forward pre-hook recomputes them from weight_g/weight_v on every forward).
def _p5(module):
    cls = getattr(module, "EMAModule", None)
    if cls is None or getattr(cls, "_d2v_p5", False):
        return
    orig_init = cls.__init__

    def __init__(self, model, *args, **kwargs):
        import torch
        from torch.nn.utils.weight_norm import WeightNorm

        for mod in model.modules():
            for hook in list(mod._forward_pre_hooks.values()):
                if isinstance(hook, WeightNorm):
                    w = getattr(mod, hook.name)
                    if isinstance(w, torch.Tensor) and w.grad_fn is not None:
                        setattr(mod, hook.name, w.detach())
        orig_init(self, model, *args, **kwargs)

    cls.__init__ = __init__
    cls._d2v_p5 = True


if "P5" not in _DISABLED:
    _POST_IMPORT["fairseq.modules.ema_module"] = _p5
    if not any(isinstance(f, _PostImportPatcher) for f in _sys.meta_path):
        _sys.meta_path.insert(0, _PostImportPatcher())
