"""Parity-fixture generators run against Meta's REFERENCE data2vec (fairseq examples/data2vec).

Imported only by scripts/make_parity_fixtures.py (the CLI; run it through scripts/make_parity_fixtures.sh).
Modules: common (shared helpers), audio_v1 / text_v1 / vision_v1 (data2vec 1.0), v2_core (data2vec 2.0 runner),
v2_audio / v2_audio_channel / v2_text_image (data2vec 2.0 fixtures).

NEVER import data2vec_plugin next to these modules (fairseq keeps the first class registered under a model name).
"""
