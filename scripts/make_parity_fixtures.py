#!/usr/bin/env python
"""Produce parity fixtures from Meta's REFERENCE data2vec code (fairseq examples).

Run through scripts/make_parity_fixtures.sh (it sets PYTHONPATH to the runtime shim +
`examples` symlink). Writes tests/fixtures/parity/<name>.pt, each a torch.save of plain
containers only (loads with torch.load(weights_only=True)):

    model_cfg      reference model config, plain dict (resolve=True, enum_to_str=True), with "_name"
    state_dict     model.state_dict() as the reference writes it (teacher under "_ema" /
                   "encoder._ema" as a nested dict), tensors cloned
    inputs         dict of input tensors
    mask           bool mask used for the masked forward
    expected       dict of reference outputs (see "expected_doc")
    expected_doc   str: exactly which reference calls produced each entry
    notes          str: per-config notes
    (+ a few extras per fixture, e.g. "dict_symbols" for text, "channel_mask" for v2_audio_channel)

Everything runs on CPU in fp32 with every dropout / layerdrop / drop-path at 0.
The teacher is made different from the student by adding 0.01*randn to every float
entry of the teacher state (then refreshing ema.fp32_params), so that targets differ
from the student's own features.

The generators live in scripts/parity_fixtures/ (common helpers, one module per model family);
this file is the CLI: --only NAME[,NAME...] (names = keys of ALL), --out DIR.

NEVER import data2vec_plugin in this process.
"""
import argparse
import os
import sys
import traceback

import torch  # noqa: F401  (import torch/fairseq before anything from examples)
import fairseq  # noqa: F401

assert "data2vec_plugin" not in sys.modules, "never import the plugin next to the reference"

from parity_fixtures.audio_v1 import make_audio  # noqa: E402  (scripts/ is sys.path[0])
from parity_fixtures.common import ROOT, quiet  # noqa: E402
from parity_fixtures.text_v1 import make_text  # noqa: E402
from parity_fixtures.v2_audio import make_v2_audio, make_v2_audio_learned_alibi  # noqa: E402
from parity_fixtures.v2_audio_channel import make_v2_audio_channel  # noqa: E402
from parity_fixtures.v2_text_image import (make_v2_image, make_v2_image_encdec, make_v2_image_tdec,  # noqa: E402
                                           make_v2_text)
from parity_fixtures.vision_v1 import make_vision  # noqa: E402

ALL = {
    "audio_default_pc1": lambda out: make_audio("audio_default_pc1", {}, out),
    "audio_ln_pc5": lambda out: make_audio(
        "audio_ln_pc5",
        dict(
            extractor_mode="layer_norm",
            pos_conv_depth=5,
            conv_pos=20,
            layer_norm_target_layer=True,
            loss_beta=0.25,
            loss_scale=0.5,
        ),
        out,
    ),
    "text_head1": lambda out: make_text("text_head1", 1, dict(loss_beta=0.0, loss_scale=0.0), out),
    "text_head2": lambda out: make_text(
        "text_head2", 2, dict(loss_beta=4.0, loss_scale=1.0, layer_norm_target_layer=True), out
    ),
    # the reference vision code print()s tensors/shapes on every forward (spec B9): silence stdout
    "vision_eob": lambda out: quiet(make_vision, "vision_eob", True, out),
    "vision_ffn": lambda out: quiet(make_vision, "vision_ffn", False, out),
    "v2_audio": make_v2_audio,
    "v2_text": make_v2_text,
    "v2_image": make_v2_image,
    "v2_image_tdec": make_v2_image_tdec,
    "v2_image_encdec": make_v2_image_encdec,
    "v2_audio_learned_alibi": make_v2_audio_learned_alibi,
    "v2_audio_channel": make_v2_audio_channel,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma list of fixture names")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "parity"))
    args = ap.parse_args()

    torch.set_num_threads(1)  # deterministic reductions
    names = [n for n in args.only.split(",") if n] or list(ALL)
    failed = []
    for n in names:
        try:
            ALL[n](args.out)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            failed.append(n)
    assert "data2vec_plugin" not in sys.modules
    if failed:
        print("FAILED:", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
