"""data2vec 2.0 masking options: inverse masks with padding, add_masks, channel masks, remove_masks."""
import logging

import numpy as np
import pytest
import torch

from data2vec_plugin.cli.demo_common import logged_values
from data2vec_plugin.cli.demo_v2 import make_data, train_cmd
from data2vec_plugin.data.v2_masking import V2MaskSpec, batch_masks
from data2vec_plugin.masking.v2_masks import block_mask_1d, channel_masks, clone_masks

from ..conftest import run_cli
from .helpers import tiny_model


def test_inverse_mask_with_padding_masks_all_padding_and_keeps_equal_counts():
    valid = [40, 30, 25]
    m = clone_masks("1d", [3, 9, 11], 2, 40, 0.6, 3, seed=1, epoch=2, inverse=True, valid=valid)
    kept = int(25 * 0.4)  # from the shortest row
    assert m.shape == (6, 40)
    for row, n in zip(m, [v for v in valid for _ in range(2)]):
        assert row[n:].all()                         # padding always masked (never seen by the student)
        assert (~row).sum() == kept                  # same kept count in every row ...
        assert (~row[:n]).sum() == kept              # ... and every kept position is real
    assert not np.array_equal(m[0], m[1])            # clones differ


def test_add_masks_grows_to_the_longest_row_and_spills_onto_padding():
    plain = clone_masks("1d", [1, 2], 1, 20, 0.5, 3, seed=0, epoch=0, valid=[20, 8])
    grown = clone_masks("1d", [1, 2], 1, 20, 0.5, 3, seed=0, epoch=0, valid=[20, 8], add_masks=True)
    assert (plain.sum(1) == 4).all() and not plain[1, 8:].any()      # trimmed to int(8 * 0.5)
    assert (grown.sum(1) == 10).all()                                # grown to int(20 * 0.5)
    assert grown[1, :8].all() and grown[1, 8:10].all() and not grown[1, 10:].any()
    same = clone_masks("1d", [1, 2], 1, 20, 0.5, 3, seed=0, epoch=0, valid=[20, 16], add_masks=True)
    assert (same.sum(1) == 10).all() and not same[1, 16:].any()      # room enough: padding untouched


def test_block_mask_1d_exact_count_when_growing_needs_padding():
    rng = np.random.default_rng(0)
    row = block_mask_1d(12, 0.5, 2, rng, valid=4, count=6)
    assert row.sum() == 6 and row[:6].all()
    with pytest.raises(ValueError, match="cannot select 13 of 12"):
        block_mask_1d(12, 0.5, 2, rng, valid=4, count=13)


def test_batch_masks_reports_valid_masked_count_and_channel_masks():
    spec = V2MaskSpec("AUDIO", "1d", 0.6, 3, inverse_mask=True, clone_batch=2, channel_prob=0.25,
                      channel_length=4, channels=32)
    out = batch_masks(spec, [5, 6], 30, seed=3, epoch=1, valid=[30, 20])
    m = out["precomputed_mask"].numpy()
    assert out["num_masked"] == int(m[0].sum()) == 30 - int(20 * 0.4)
    assert out["num_valid_masked"] == int(m[:2].sum() + m[2:, :20].sum())
    ch = out["channel_mask"]
    assert ch.shape == (4, 32) and ch.dtype == torch.bool
    counts = ch.sum(1)
    assert (counts == counts[0]).all() and 0 < int(counts[0]) <= 0.25 * 32 + 4
    again = channel_masks([5, 6], 2, 32, 0.25, 4, seed=3, epoch=1)
    assert np.array_equal(again, ch.numpy())
    assert not np.array_equal(channel_masks([5, 6], 2, 32, 0.25, 4, seed=3, epoch=2), again)
    assert "num_valid_masked" not in batch_masks(V2MaskSpec("AUDIO", "1d", 0.6, 3), [5, 6], 30, 3, 1, [30, 20])


def _padded_audio(b=2):
    g = torch.Generator().manual_seed(0)
    src = torch.randn(b, 2000, generator=g)
    pad = torch.zeros(b, 2000, dtype=torch.bool)
    pad[1, 1400:] = True
    src[1, 1400:] = 0
    return src, pad


def test_masked_padding_is_left_out_of_the_loss():
    torch.manual_seed(0)
    model = tiny_model("AUDIO", modalities={"audio": {"inverse_mask": True, "mask_prob": 0.6}}).eval()
    src, pad = _padded_audio()
    out = model(src, padding_mask=pad, id=torch.tensor([0, 1]))
    loss = out["losses"]["AUDIO_regression"]
    enc = model.modality_encoders["AUDIO"]
    local = enc.local_features(src)
    frames = enc.convert_padding_mask(local, pad)
    info_mask = model.compute_mask("AUDIO", enc, local, pad, torch.tensor([0, 1]), 2)
    masked_pad = frames.repeat_interleave(2, 0)[info_mask].sum()
    assert masked_pad > 0                                     # padding frames are masked ...
    zero_rows = (loss.sum(-1) == 0).sum()
    assert zero_rows >= masked_pad                            # ... and weigh nothing
    assert out["sample_size"] == int(info_mask.sum() - masked_pad)
    assert torch.isfinite(loss).all()


def test_channel_mask_changes_the_student_input_only_through_the_positional_conv():
    torch.manual_seed(0)
    model = tiny_model("AUDIO", modalities={"audio": {"mask_channel_prob": 0.5, "mask_channel_length": 8}})
    model.eval()
    enc = model.modality_encoders["AUDIO"]
    src = torch.randn(2, 2000)
    local = enc.local_features(src)
    info = model.mask_info("AUDIO", enc, local, None, True, torch.tensor([0, 1]), 2, None, None)
    ch = model.channel_mask("AUDIO", local, torch.tensor([0, 1]), 2, None)
    assert ch.shape == (4, 32) and ch.any()
    masked = enc.apply_mask(local.repeat_interleave(2, 0), info, ch)
    assert (masked.masked_select(ch.unsqueeze(1).expand_as(masked)) == 0).all()
    with_ch = enc.contextualized_features(local, None, info, True, 2, ch).x
    none_ch = enc.contextualized_features(local, None, info, True, 2, torch.zeros_like(ch)).x
    no_arg = enc.contextualized_features(local, None, info, True, 2, None).x
    torch.testing.assert_close(none_ch, no_arg, atol=0, rtol=0)
    assert not torch.allclose(with_ch, no_arg)
    with pytest.raises(ValueError, match="channel_mask has shape"):
        model.channel_mask("AUDIO", local, torch.tensor([0, 1]), 2, torch.zeros(3, 32, dtype=torch.bool))


def test_remove_masks_warns_and_bad_channel_prob_raises(caplog):
    with caplog.at_level(logging.WARNING):
        tiny_model("AUDIO", modalities={"audio": {"remove_masks": True}})
    assert "remove_masks has no effect" in caplog.text
    with pytest.raises(ValueError, match="modalities.audio.mask_channel_prob"):
        tiny_model("AUDIO", modalities={"audio": {"mask_channel_prob": 1.5}})


def test_padded_audio_run_with_inverse_add_and_channel_masks(tmp_path):
    data = make_data("audio", str(tmp_path / "data"))
    audio = "+model.modalities.audio."
    over = ["optimization.max_update=6", "common.log_interval=2", "+task.enable_padding=true",
            "task.min_sample_size=2000", audio + "inverse_mask=true", audio + "add_masks=true",
            audio + "mask_channel_prob=0.2", audio + "mask_channel_length=4", audio + "remove_masks=true"]
    proc = run_cli(train_cmd("audio", data, str(tmp_path), over), tmp_path)
    log = proc.stdout + proc.stderr
    losses = logged_values(log, "loss")
    assert len(losses) >= 2 and all(np.isfinite(losses)), log[-3000:]
    assert "done training" in log
