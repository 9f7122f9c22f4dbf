#!/usr/bin/env bash
# Produce REAL reference training checkpoints (Meta's examples/data2vec, trained for a few
# updates by the stock `fairseq-hydra-train` on CPU) for the plugin's load tests:
#
#   tests/fixtures/ref_ckpt/<name>.pt            checkpoint_last.pt as the reference trainer wrote it
#   tests/fixtures/ref_ckpt/<name>.expected.pt   features of a fixed input computed by the reference
#                                                after load_model_ensemble_and_task (plain containers:
#                                                inputs, features, expected_doc, ...)
#   tests/fixtures/ref_ckpt/text_dict.txt        the dict.txt of the tiny text dataset (masked_lm
#                                                needs it to rebuild the task; <mask> is added by the task)
#   tests/fixtures/ref_ckpt/README.md            what was run, key cfg values, weights_only result
#
# Names: audio_default_pc1 audio_ln_pc5 text_head1 text_head2 vision (v1) and, unless
# D2V_SKIP_V2=1, v2_audio v2_text v2_image (data2vec_multi).
#
# Data (generated in a temp dir): 8 x 1 s 16 kHz noise wavs + manifest, a tiny binarized text
# set made with fairseq-preprocess from generated sentences, 8 random 32x32 PNGs.
#
# The reference needs the runtime shim (/work/shared/reference/reference_runtime/sitecustomize.py,
# see running_the_reference.md). This script copies it into a temp dir next to an
# `examples -> <site-packages>/fairseq/examples` symlink and APPENDS one more runtime fix (P5,
# see below) to the copy; nothing installed is edited.
#
# Usage: scripts/make_reference_checkpoints.sh [name ...]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
BIN="$(dirname "$PY")"
SHIM="${D2V_REF_SHIM:-/work/shared/reference/reference_runtime/sitecustomize.py}"
OUT="$ROOT/tests/fixtures/ref_ckpt"
CFG_DIR="$ROOT/scripts/ref_configs"

SITE_FAIRSEQ="$("$PY" -c 'import os, fairseq; print(os.path.dirname(fairseq.__file__))' 2>/dev/null | tail -1)"
REF="$SITE_FAIRSEQ/examples/data2vec"
[[ -d "$REF" ]] || { echo "reference not found: $REF" >&2; exit 2; }
[[ -f "$SHIM" ]] || { echo "shim not found: $SHIM" >&2; exit 2; }

WORK="$(mktemp -d -t d2v_ref_ckpt.XXXXXX)"
if [[ "${D2V_KEEP_WORK:-0}" != 1 ]]; then trap 'rm -rf "$WORK"' EXIT; else echo "work dir: $WORK"; fi
RT="$WORK/rt"
mkdir -p "$RT"
cp "$SHIM" "$RT/sitecustomize.py"
ln -s "$SITE_FAIRSEQ/examples" "$RT/examples"
# P5 (not part of the shared shim): see scripts/ref_shim_p5.py
cat "$ROOT/scripts/ref_shim_p5.py" >> "$RT/sitecustomize.py"
export PYTHONPATH="$RT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONWARNINGS="ignore"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

NAMES=("$@")
if [[ ${#NAMES[@]} -eq 0 ]]; then
  NAMES=(audio_default_pc1 audio_ln_pc5 text_head1 text_head2 vision)
  [[ "${D2V_SKIP_V2:-0}" == 1 ]] || NAMES+=(v2_audio v2_text v2_image)
fi

# ------------------------------------------------------------------ data
DATA="$WORK/data"
mkdir -p "$DATA/audio" "$DATA/text_raw" "$DATA/images/train" "$DATA/images/valid"
"$PY" - "$DATA" <<'EOF'
import os, sys
import numpy as np
import soundfile as sf
from PIL import Image

data = sys.argv[1]
rng = np.random.default_rng(0)
# audio: 8 x 1 s of noise at 16 kHz + fairseq manifests (root line, then "relpath\tnum_samples")
adir = os.path.join(data, "audio")
rows = []
for i in range(8):
    wav = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    fn = f"noise_{i}.wav"
    sf.write(os.path.join(adir, fn), wav, 16000)
    rows.append(f"{fn}\t16000")
for split, rs in (("train", rows), ("valid", rows[:2])):
    with open(os.path.join(adir, f"{split}.tsv"), "w") as f:
        f.write(adir + "\n" + "\n".join(rs) + "\n")
# text: generated sentences over a 40-word vocabulary, documents separated by blank lines
words = [f"w{i}" for i in range(40)]
tdir = os.path.join(data, "text_raw")
for split, n_docs in (("train", 24), ("valid", 4)):
    lines = []
    for d in range(n_docs):
        for s in range(3):
            n = int(rng.integers(4, 10))
            lines.append(" ".join(words[j] for j in rng.integers(0, 40, n)))
        lines.append("")
    with open(os.path.join(tdir, f"{split}.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
# images: 8 + 2 random 32x32 RGB PNGs (ImageFolder layout <split>/<class>/x.png for the v2 task)
for split, n in (("train", 8), ("valid", 2)):
    cdir = os.path.join(data, "images", split, "c0")
    os.makedirs(cdir, exist_ok=True)
    for i in range(n):
        arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(arr).save(os.path.join(cdir, f"img_{i}.png"))
print("data ok")
EOF
"$BIN/fairseq-preprocess" --only-source --trainpref "$DATA/text_raw/train.txt" \
  --validpref "$DATA/text_raw/valid.txt" --destdir "$DATA/text_bin" --workers 1 \
  > "$WORK/preprocess.log" 2>&1 || { cat "$WORK/preprocess.log"; exit 1; }

# ------------------------------------------------------------------ training runs
mkdir -p "$OUT"
declare -A CONFIG DATADIR OVR
CONFIG[audio_default_pc1]=audio_d2v1;  DATADIR[audio_default_pc1]="$DATA/audio"
OVR[audio_default_pc1]=""
CONFIG[audio_ln_pc5]=audio_d2v1;       DATADIR[audio_ln_pc5]="$DATA/audio"
OVR[audio_ln_pc5]="model.extractor_mode=layer_norm model.pos_conv_depth=5 model.conv_pos=20 ++model.layer_norm_target_layer=true model.loss_beta=0.25 model.loss_scale=0.5"
CONFIG[text_head1]=text_d2v1;          DATADIR[text_head1]="$DATA/text_bin"
OVR[text_head1]="model.head_layers=1 model.loss_beta=0 model.loss_scale=0 model.layer_norm_target_layer=false"
CONFIG[text_head2]=text_d2v1;          DATADIR[text_head2]="$DATA/text_bin"
OVR[text_head2]=""
CONFIG[vision]=vision_d2v1;            DATADIR[vision]="$DATA/images"
OVR[vision]=""
CONFIG[v2_audio]=v2_audio;             DATADIR[v2_audio]="$DATA/audio"
OVR[v2_audio]=""
CONFIG[v2_text]=v2_text;               DATADIR[v2_text]="$DATA/text_bin"
OVR[v2_text]=""
CONFIG[v2_image]=v2_image;             DATADIR[v2_image]="$DATA/images"
OVR[v2_image]=""

: > "$WORK/commands.txt"
for name in "${NAMES[@]}"; do
  cfg="${CONFIG[$name]}"
  run="$WORK/runs/$name"
  mkdir -p "$run"
  # shellcheck disable=SC2206
  extra=(${OVR[$name]})
  cmd=("$BIN/fairseq-hydra-train" --config-dir "$CFG_DIR" --config-name "$cfg"
       "common.user_dir=$REF" "task.data=${DATADIR[$name]}" common.cpu=true
       "checkpoint.save_dir=$run/ckpt" "hydra.run.dir=$run/hydra" "${extra[@]}")
  echo "== $name"
  printf '%s\n' "fairseq-hydra-train --config-dir scripts/ref_configs --config-name $cfg common.user_dir=<site-packages>/fairseq/examples/data2vec task.data=<tmp>/${DATADIR[$name]#$DATA/} common.cpu=true checkpoint.save_dir=<tmp> hydra.run.dir=<tmp> ${OVR[$name]}" > "$run/command.txt"
  if ! (cd "$run" && "${cmd[@]}") > "$run/train.log" 2>&1; then
    echo "training $name FAILED; tail of log:" >&2
    tail -40 "$run/train.log" >&2
    exit 1
  fi
  grep -E "num_updates|done training|Saved checkpoint" "$run/train.log" | tail -3 || true
  cp "$run/ckpt/checkpoint_last.pt" "$OUT/$name.pt"
  printf '%s\t%s\n' "$name" "$(cat "$run/command.txt")" >> "$WORK/commands.txt"
done
cp "$DATA/text_bin/dict.txt" "$OUT/text_dict.txt"

# ------------------------------------------------------------------ expected outputs + README
"$PY" - "$OUT" "$REF" "$WORK" "${NAMES[@]}" <<'EOF'
import contextlib, io, json, os, sys
from argparse import Namespace

import torch
import fairseq  # noqa: F401
from fairseq import checkpoint_utils, utils

out, ref, work, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
utils.import_user_module(Namespace(user_dir=ref))
data = {
    "audio": os.path.join(work, "data", "audio"),
    "text": os.path.join(work, "data", "text_bin"),
    "image": os.path.join(work, "data", "images"),
}
cmds = dict(l.rstrip("\n").split("\t", 1) for l in open(os.path.join(work, "commands.txt")))

KEYS = {
    "data2vec_audio": ["extractor_mode", "conv_feature_layers", "conv_pos", "conv_pos_groups", "pos_conv_depth",
                       "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                       "average_top_k_layers", "instance_norm_target_layer", "layer_norm_target_layer", "loss_beta",
                       "loss_scale", "mask_prob", "mask_length", "ema_decay", "ema_end_decay", "ema_anneal_end_step",
                       "ema_transformer_only", "ema_layers_only"],
    "data2vec_text": ["max_positions", "head_layers", "average_top_k_layers", "instance_norm_target_layer",
                      "layer_norm_target_layer", "loss_beta", "loss_scale", "ema_decay", "ema_end_decay",
                      "ema_anneal_end_step", "ema_transformer_layers_only", "transformer.encoder.embed_dim",
                      "transformer.encoder.layers", "transformer.encoder.attention_heads",
                      "transformer.encoder.ffn_embed_dim", "transformer.max_source_positions",
                      "transformer.activation_fn", "transformer.layernorm_embedding",
                      "transformer.no_scale_embedding", "transformer.decoder.input_dim"],
    "data2vec_vision": ["image_size", "patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio",
                        "layer_scale_init_value", "num_mask_patches", "min_mask_patches_per_block",
                        "average_top_k_layers", "end_of_block_targets", "instance_norm_target_layer",
                        "loss_beta", "loss_scale", "ema_decay", "ema_end_decay", "ema_anneal_end_step"],
    "data2vec_multi": ["supported_modality", "depth", "embed_dim", "num_heads", "mlp_ratio", "clone_batch",
                       "average_top_k_layers", "instance_norm_target_layer", "layer_norm_targets",
                       "end_of_block_targets", "ema_encoder_only", "loss_beta", "loss_scale", "cls_loss",
                       "ema_decay", "ema_end_decay", "ema_anneal_end_step"],
}
TASK_KEYS = ["_name", "data", "max_sample_size", "min_sample_size", "normalize", "precompute_mask_config",
             "sample_break_mode", "tokens_per_sample", "include_target_tokens", "mask_prob", "mask_multiple_length",
             "random_token_prob", "leave_unmasked_prob", "d2v2_multi", "skip_masking", "include_index",
             "input_size", "key", "rebuild_batches"]


def get(d, dotted):
    for p in dotted.split("."):
        if not isinstance(d, dict) or p not in d:
            return "<absent>"
        d = d[p]
    return d


def plain(o):
    if isinstance(o, torch.Tensor):
        return o.detach().cpu().clone()
    if isinstance(o, dict):
        return {str(k): plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(v) for v in o]
    return o


readme = [
    "# Reference data2vec training checkpoints (tiny, CPU)",
    "",
    "Generated by `scripts/make_reference_checkpoints.sh` with Meta's unmodified reference",
    "(`fairseq-fixed==0.12.3.1`, `<site-packages>/fairseq/examples/data2vec`) trained by the stock",
    "`fairseq-hydra-train` for 3 updates on CPU (fp32) on generated data (1-s 16 kHz noise wavs,",
    "a fairseq-preprocess'd tiny text set with a 40-word vocabulary, random 32x32 PNGs).",
    "Runtime: the shared shim `reference_runtime/sitecustomize.py` (P1-P4) plus an extra fix P5 appended by the",
    "script (EMAModule deep-copy of weight-normed pos_conv, torch 2.14; only matters for pos_conv_depth=1).",
    "Each `<name>.pt` is the `checkpoint_last.pt` written by the reference trainer (top keys: args=None, cfg as a",
    "plain dict, model incl. the teacher under `_ema` / `encoder._ema`, criterion, optimizer_history,",
    "task_state, extra_state, last_optimizer_state). `<name>.expected.pt` holds `inputs`, `features`",
    "and `expected_doc`: features of a fixed input computed by the reference after",
    "`checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides={'data': <data dir>})`, `model.eval()`.",
    "`text_dict.txt` is the dict.txt of the text set (the masked_lm task needs it at `task.data`; it adds",
    "`<mask>` itself). Paths inside the checkpoints' cfg (task.data, save_dir, user_dir) point at deleted temp dirs:",
    "override `data` when loading. `v2_text` uses the same text_dict.txt.",
    "",
    "Reference quirks hit while producing these (exact errors):",
    "",
    "- P5 / pos_conv_depth=1 (audio_default_pc1): without the appended fix, stock training dies at the first",
    "  `set_num_updates` (EMAModule deep-copies the encoder whose weight-normed pos_conv holds a non-leaf `weight`):",
    "  `RuntimeError: Only Tensors created explicitly by the user (graph leaves) support the deepcopy protocol at the",
    "  moment.  If you were attempting to deepcopy a module, this may be because of a torch.nn.utils.weight_norm usage,",
    "  see https://github.com/pytorch/pytorch/pull/103001`. The same happens in `load_model_ensemble_and_task`",
    "  (it calls `set_num_updates` before `load_state_dict`). A plugin loading `audio_default_pc1.pt` must not rely on",
    "  deep-copying a freshly built weight-normed module.",
    "- text v1: `model.transformer.decoder.input_dim/output_dim` set explicitly in the yaml (else",
    "  `InterpolationKeyError` on `${model.decoder.embed_dim}`); `model.loss_scale` must not be null (`<=` on None).",
    "  text_head1 uses loss_scale=0, which the reference maps to 1/sqrt(D).",
    "- lr_scheduler `fixed` is used everywhere (tri_stage divides by zero for max_update=3).",
    "- the reference vision code prints tensors/shapes on every forward (spec B9); stdout is silenced when computing",
    "  expected features.",
    "",
]

for name in names:
    path = os.path.join(out, f"{name}.pt")
    raw_size = os.path.getsize(path)
    try:
        st = torch.load(path, weights_only=True)
        wo = "OK: loads with torch.load(weights_only=True)"
    except Exception as e:  # noqa: BLE001
        wo = f"FAILS with weights_only=True: {type(e).__name__}: {str(e).splitlines()[0]}"
        st = torch.load(path, weights_only=False)
    cfg = st["cfg"]
    mname = cfg["model"]["_name"]
    mod = {"data2vec_audio": "audio", "data2vec_text": "text", "data2vec_vision": "image"}.get(mname)
    if mname == "data2vec_multi":
        mod = {"AUDIO": "audio", "TEXT": "text", "IMAGE": "image"}[cfg["model"]["supported_modality"]]
    with contextlib.redirect_stdout(io.StringIO()):  # the reference vision code prints on every forward
        models, saved_cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [path], arg_overrides={"data": data[mod]}
        )
    model = models[0].eval()
    g = torch.Generator().manual_seed(0)
    extra_doc = ""
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        if mod == "audio":
            source = torch.randn(1, 16000, generator=g)
            inputs = {"source": source}
            if mname == "data2vec_audio":
                r = model.extract_features(source, None, mask=False)
                call = "model.extract_features(inputs['source'], None, mask=False)['x']"
            else:
                r = model.extract_features(source, mode="AUDIO", padding_mask=None, mask=False)
                call = "model.extract_features(inputs['source'], mode='AUDIO', padding_mask=None, mask=False)['x']"
            feats = r["x"]
            extra_doc = (" The input is passed as is (the task's normalize=true would layer-norm a dataset waveform; "
                         "this random-normal input is already ~normalised but NOT exactly).")
        elif mod == "text":
            d = task.source_dictionary
            toks = [d.bos()] + [d.index(f"w{i}") for i in (3, 17, 5, 29, 11, 0, 38)] + [d.eos()]
            src = torch.tensor([toks])
            inputs = {"src_tokens": src}
            if mname == "data2vec_text":
                feats = model(src, features_only=True)[0]
                call = "model(inputs['src_tokens'], features_only=True)[0]"
            else:
                r = model.extract_features(src, mode="TEXT", padding_mask=src.eq(d.pad()), mask=False)
                feats = r["x"]
                call = "model.extract_features(inputs['src_tokens'], mode='TEXT', padding_mask=src.eq(pad), mask=False)['x']"
            extra_doc = f" Token ids are from text_dict.txt + <mask> (len(dictionary)={len(d)}, <mask>={d.index('<mask>')})."
        else:
            img = torch.randn(1, 3, 32, 32, generator=g)
            inputs = {"img": img}
            if mname == "data2vec_vision":
                feats = model(img, mask=False)
                call = "model(inputs['img'], mask=False)  (student, final norm, cls dropped)"
            else:
                feats = model.extract_features(img, mode="IMAGE", mask=False)["x"]
                call = "model.extract_features(inputs['img'], mode='IMAGE', mask=False)['x']  (extra tokens removed)"
    has_teacher = getattr(model, "ema", None) is not None or getattr(getattr(model, "encoder", None), "ema", None) is not None
    num_updates = st["optimizer_history"][-1]["num_updates"]
    ema_key = "encoder._ema" if "encoder._ema" in st["model"] else "_ema"
    exp = {
        "name": name,
        "inputs": inputs,
        "features": feats,
        "expected_doc": (
            f"checkpoint_utils.load_model_ensemble_and_task(['{name}.pt'], arg_overrides={{'data': <data dir>}}); "
            f"model = models[0].eval(); features = {call} under torch.no_grad().{extra_doc}"
        ),
        "num_updates": int(num_updates),
        "model_name": mname,
        "teacher_key": ema_key,
        "n_teacher_tensors": len(st["model"][ema_key]),
    }
    torch.save(plain(exp), os.path.join(out, f"{name}.expected.pt"))
    torch.load(os.path.join(out, f"{name}.expected.pt"), weights_only=True)

    readme += [f"## {name}.pt", ""]
    readme += [f"- size: {raw_size / 1024:.0f} KiB; model `{mname}`; optimizer_history[-1].num_updates = {num_updates}; "
               f"teacher saved under `{ema_key}` ({len(st['model'][ema_key])} tensors); teacher rebuilt on load: {has_teacher}",
               f"- weights_only: {wo}",
               f"- command: `{cmds.get(name, '?')}`",
               f"- features: `{call}` -> shape {tuple(feats.shape)} (stored in `{name}.expected.pt`)",
               "- cfg.task: " + ", ".join(f"{k}={json.dumps(cfg['task'].get(k), default=str)}" for k in TASK_KEYS if k in cfg["task"]),
               "- cfg.model: " + ", ".join(f"{k}={json.dumps(get(cfg['model'], k), default=str)}" for k in KEYS[mname]),
               ""]
    print(f"[ok] {name}: {wo}; features {tuple(feats.shape)}", file=sys.stderr)

with open(os.path.join(out, "README.md"), "w") as f:
    f.write("\n".join(readme))
EOF
echo "done: $OUT"
