"""``d2v-export-hf CKPT OUT_DIR``: write a Hugging Face transformers model directory (config.json +
model.safetensors) for data2vec_audio / data2vec_text / data2vec_vision checkpoints (needs ``pip install -e .[hf]``).
"""
import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="d2v-export-hf", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("out_dir")
    p.add_argument("--data", default=None, help="folder with dict.txt (text checkpoints); default: checkpoint folder")
    a = p.parse_args(argv)
    from ..checkpoints.formats import CheckpointError
    from ..checkpoints.hf_export import ExportError, export_hf
    try:
        hf = export_hf(a.checkpoint, a.out_dir, a.data)
    except (CheckpointError, ExportError) as e:
        print(f"d2v-export-hf: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out_dir} ({type(hf).__name__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
