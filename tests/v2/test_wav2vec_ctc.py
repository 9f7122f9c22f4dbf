"""fairseq's wav2vec_ctc fine-tuning accepts audio data2vec_multi checkpoints written by the plugin."""
import torch

from data2vec_plugin.cli.demo_v2 import make_data, train_cmd

from ..conftest import PLUGIN_DIR, run_cli


def test_wav2vec_ctc_finetuning_from_v2_checkpoint(tmp_path):
    d = make_data("audio", str(tmp_path / "data"))
    run_cli(train_cmd("audio", d, str(tmp_path), ["optimization.max_update=4",
                                                  "checkpoint.save_interval_updates=4"]), tmp_path)
    for split in ("train", "valid"):
        n = len((tmp_path / "data" / f"{split}.tsv").read_text().splitlines()) - 1
        (tmp_path / "data" / f"{split}.ltr").write_text("A B | C D |\n" * n)
    (tmp_path / "data" / "dict.ltr.txt").write_text("| 10\nA 5\nB 5\nC 5\nD 5\n")
    ft = tmp_path / "ctc"
    run_cli(["fairseq-train", d, "--user-dir", PLUGIN_DIR, "--task", "audio_finetuning", "--labels", "ltr",
             "--normalize", "--arch", "wav2vec_ctc", "--w2v-path", tmp_path / "audio_ckpt" / "checkpoint_last.pt",
             "--criterion", "ctc", "--cpu", "--max-sample-size", "16000", "--batch-size", "4",
             "--required-batch-size-multiple", "1", "--optimizer", "adam", "--lr", "0.0001", "--max-update", "2",
             "--save-dir", ft, "--log-format", "simple", "--num-workers", "0", "--mask-prob", "0.3"], tmp_path)
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(ft / "checkpoint_last.pt")],
                                                                 arg_overrides={"data": d})
    m = models[0].eval()
    enc = m.w2v_encoder.w2v_model
    assert type(enc).__name__ == "Data2VecMultiModel" and enc.teacher is None
    assert enc.modality_encoders["AUDIO"].decoder is None
    logits = m(source=torch.randn(1, 8000), padding_mask=None)["encoder_out"]
    assert logits.shape[-1] == 9 and torch.isfinite(logits).all()
