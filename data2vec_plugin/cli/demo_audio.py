"""Audio part of `make demo`: generated speech-like clips -> data2vec pretraining -> load -> features."""
import os

from .demo_common import REPO, PLUGIN_DIR, first_last, run_logged
from .synthetic import make_audio_dataset


def run(out_dir: str) -> dict:
    data = os.path.join(out_dir, "audio_data")
    ckpt = os.path.join(out_dir, "audio_ckpt")
    print(f"[audio] generating {data} (synthetic harmonic chirps, 16 kHz)")
    make_audio_dataset(data, n_train=32, n_valid=4, seconds=1.0)
    print("[audio] pretraining examples/audio/pretrain_tiny.yaml with fairseq-hydra-train")
    log = run_logged(["fairseq-hydra-train", "--config-dir", REPO / "examples" / "audio", "--config-name",
                      "pretrain_tiny", f"common.user_dir={PLUGIN_DIR}", f"task.data={data}",
                      f"checkpoint.save_dir={ckpt}", f"hydra.run.dir={out_dir}/audio_hydra",
                      f"common.log_file={out_dir}/audio_train.log", "optimization.max_update=120",
                      "model.ema_anneal_end_step=100", "common.log_interval=10", "checkpoint.save_interval_updates=60",
                      "dataset.validate_interval=5"],
                     os.path.join(out_dir, "audio_stdout.log"))
    stats = first_last(log, ["loss", "target_var", "pred_var"])
    for k, (a, b) in stats.items():
        print(f"[audio] {k}: start {a:.4f} -> end {b:.4f}")

    import soundfile as sf
    import torch
    import data2vec_plugin  # noqa: F401
    from fairseq import checkpoint_utils
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
        [os.path.join(ckpt, "checkpoint_last.pt")], arg_overrides={"data": data})
    model = models[0].eval()
    wav, _ = sf.read(os.path.join(data, "wav", "utt0000.wav"), dtype="float32")
    source = torch.nn.functional.layer_norm(torch.from_numpy(wav), (len(wav),))[None]
    with torch.no_grad():
        feats = model.extract_features(source, None)["x"]
    print(f"[audio] loaded {ckpt}/checkpoint_last.pt; features of utt0000.wav: {tuple(feats.shape)} "
          "(batch, frames at 50 Hz, dim)")
    return {"stats": stats, "feature_shape": tuple(feats.shape), "json_log": f"{out_dir}/audio_train.log"}
