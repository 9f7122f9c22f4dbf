
# --------------------------------------------------------------------------- P6
# (appended to a temp copy of the shared shim by scripts/make_reference_checkpoints.sh, AFTER P5; the
# script switches it off with D2V_SHIM_DISABLE=P6 for every run that does not use learned ALiBi)
# Runtime fix of a REFERENCE BUG (data2vec 2.0 `modalities.<m>.learned_alibi: true`), not of the stack:
# as released, the option cannot build or run at all --
#   * ModalitySpecificEncoder.__init__ builds the initial table with
#       self.get_alibi_bias(batch_size=1, time_steps=alibi_max_pos, heads=..., scale=1.0, dtype=..., device=...)
#     but the audio encoder's get_alibi_bias (partial of modalities/base.py:get_alibi_bias) takes no `scale`:
#       TypeError: get_alibi_bias() got an unexpected keyword argument 'scale'
#   * contextualized_features then calls the learned replacement partial(_learned_alibi_bias, alibi_bias=...)
#     without `scale`, which _learned_alibi_bias requires:
#       TypeError: _learned_alibi_bias() missing 1 required positional argument: 'scale'
# Fix (the same minimal patch as `reference_learned_alibi_fix` in scripts/parity_fixtures/v2_audio.py, used for
# the parity fixtures): only two module-level names change --
#   * modalities/audio.py's `get_alibi_bias` accepts `scale` (multiplies the fixed table by it; the reference
#     passes 1.0, so the initial learned table is exactly the fixed ALiBi table);
#   * modalities/base.py's `_learned_alibi_bias` defaults `scale` to 1.0 (the alibi_scale parameter is still
#     applied afterwards in contextualized_features, exactly as for the fixed table).
# Nothing else of the reference changes; with learned_alibi false both wrappers are call-for-call identical to
# the originals (scale is never passed / never used).
def _p6_audio(module):
    fixed = getattr(module, "get_alibi_bias", None)
    if fixed is None or getattr(fixed, "_d2v_p6", False):
        return

    def get_alibi_bias(*args, scale=1.0, **kwargs):
        bias = fixed(*args, **kwargs)
        return bias if scale == 1.0 else bias * scale

    get_alibi_bias._d2v_p6 = True
    module.get_alibi_bias = get_alibi_bias


def _p6_base(module):
    learned = getattr(module, "_learned_alibi_bias", None)
    if learned is None or getattr(learned, "_d2v_p6", False):
        return

    def _learned_alibi_bias(alibi_bias, batch_size, time_steps, heads, dtype, device, scale=1.0):
        return learned(alibi_bias, batch_size, time_steps, heads, scale, dtype, device)

    _learned_alibi_bias._d2v_p6 = True
    module._learned_alibi_bias = _learned_alibi_bias


if "P6" not in _DISABLED:
    _POST_IMPORT["data2vec.models.modalities.audio"] = _p6_audio
    _POST_IMPORT["data2vec.models.modalities.base"] = _p6_base
    if not any(isinstance(f, _PostImportPatcher) for f in _sys.meta_path):
        _sys.meta_path.insert(0, _PostImportPatcher())
