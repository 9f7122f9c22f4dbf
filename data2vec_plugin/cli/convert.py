"""``d2v-convert IN OUT [--trust-source]``: rewrite a data2vec checkpoint into the safe (weights-only) format.

Legacy checkpoints (``args`` Namespace, numpy scalars) need ``--trust-source``; files whose pickle references
code-executing globals are always refused. The teacher (``_ema``) and all weights are kept.
"""
import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="d2v-convert", description=__doc__.split("\n\n")[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--trust-source", action="store_true",
                   help="allow reading the known legacy data classes (argparse.Namespace, numpy scalars, omegaconf)")
    a = p.parse_args(argv)
    from ..checkpoints.convert import convert_checkpoint
    from ..checkpoints.formats import CheckpointError
    try:
        info = convert_checkpoint(a.input, a.output, a.trust_source)
    except CheckpointError as e:
        print(f"d2v-convert: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.output}: {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
