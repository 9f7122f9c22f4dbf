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
# D2V_SKIP_V2=1, v2_audio v2_text v2_image v2_image_tdec v2_image_encdec v2_audio_learned_alibi
# (data2vec_multi; the last three: image transformer_decoder, image transformer_decoder +
# enc_dec_transformer, audio learned_alibi with alibi_max_pos=32 < 799 frames).
# Give names to (re)generate only those: the other files in the output dir are not touched, and
# README.md keeps the other checkpoints' sections verbatim (only its header is rewritten).
#
# Data (generated in a temp dir): 8 x 1 s 16 kHz noise wavs + manifest, a tiny binarized text
# set made with fairseq-preprocess from generated sentences, 8 random 32x32 PNGs.
#
# The reference needs the runtime shim (/work/shared/reference/reference_runtime/sitecustomize.py,
# see running_the_reference.md). This script copies it into a temp dir next to an
# `examples -> <site-packages>/fairseq/examples` symlink and APPENDS two more runtime fixes to the
# copy; nothing installed is edited:
#   P5 (scripts/ref_shim_p5.py)  EMAModule deep-copy of a weight-normed pos_conv (torch 2.14), all runs;
#   P6 (scripts/ref_shim_p6.py)  minimal fix of the reference's learned-ALiBi bug (TypeErrors on `scale`),
#                                switched ON only for the names in P6_NAMES (D2V_SHIM_DISABLE=P6 for the
#                                others), in training and in the expected-features step.
# The python parts are in scripts/ref_checkpoints/ (make_data.py, expected.py, readme.py).
#
# Usage: scripts/make_reference_checkpoints.sh [name ...]
#   D2V_REF_OUT=DIR  write to DIR instead of tests/fixtures/ref_ckpt (e.g. to compare a regeneration)
#   D2V_KEEP_WORK=1  keep the temp work dir (data, hydra dirs, train logs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
BIN="$(dirname "$PY")"
SHIM="${D2V_REF_SHIM:-/work/shared/reference/reference_runtime/sitecustomize.py}"
OUT="${D2V_REF_OUT:-$ROOT/tests/fixtures/ref_ckpt}"
SCRIPTS="$ROOT/scripts/ref_checkpoints"
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
# P6 (a reference bug, only for learned_alibi runs): see scripts/ref_shim_p6.py
cat "$ROOT/scripts/ref_shim_p6.py" >> "$RT/sitecustomize.py"
P6_NAMES=" v2_audio_learned_alibi "
USER_DISABLE="${D2V_SHIM_DISABLE:-}"
shim_disable() {  # D2V_SHIM_DISABLE value for one name: P6 off unless the name needs it
  if [[ "$P6_NAMES" == *" $1 "* ]]; then echo "$USER_DISABLE"; else echo "${USER_DISABLE:+$USER_DISABLE,}P6"; fi
}
export PYTHONPATH="$RT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONWARNINGS="ignore"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

NAMES=("$@")
if [[ ${#NAMES[@]} -eq 0 ]]; then
  NAMES=(audio_default_pc1 audio_ln_pc5 text_head1 text_head2 vision)
  [[ "${D2V_SKIP_V2:-0}" == 1 ]] || NAMES+=(v2_audio v2_text v2_image v2_image_tdec v2_image_encdec v2_audio_learned_alibi)
fi

# ------------------------------------------------------------------ data
DATA="$WORK/data"
mkdir -p "$DATA/audio" "$DATA/text_raw" "$DATA/images/train" "$DATA/images/valid"
"$PY" "$SCRIPTS/make_data.py" "$DATA"
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
CONFIG[v2_image_tdec]=v2_image_tdec;   DATADIR[v2_image_tdec]="$DATA/images"
OVR[v2_image_tdec]=""
CONFIG[v2_image_encdec]=v2_image_encdec; DATADIR[v2_image_encdec]="$DATA/images"
OVR[v2_image_encdec]=""
CONFIG[v2_audio_learned_alibi]=v2_audio_learned_alibi; DATADIR[v2_audio_learned_alibi]="$DATA/audio"
OVR[v2_audio_learned_alibi]=""
ALL_NAMES=(audio_default_pc1 audio_ln_pc5 text_head1 text_head2 vision v2_audio v2_text v2_image
           v2_image_tdec v2_image_encdec v2_audio_learned_alibi)
for name in "${NAMES[@]}"; do
  [[ -n "${CONFIG[$name]:-}" ]] || { echo "unknown name: $name (known: ${ALL_NAMES[*]})" >&2; exit 2; }
done

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
  if ! (cd "$run" && D2V_SHIM_DISABLE="$(shim_disable "$name")" "${cmd[@]}") > "$run/train.log" 2>&1; then
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
# one process per name, so that P6 is active only where it is needed
for name in "${NAMES[@]}"; do
  D2V_SHIM_DISABLE="$(shim_disable "$name")" "$PY" "$SCRIPTS/expected.py" "$OUT" "$REF" "$WORK" "$name"
done
"$PY" "$SCRIPTS/readme.py" "$OUT" "$WORK" "${ALL_NAMES[@]}"
echo "done: $OUT"
