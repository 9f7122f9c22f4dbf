"""``d2v-prepare-text RAW.txt DEST``: raw text -> sentencepiece -> fairseq binarized data for data2vec text.

Writes ``DEST/spm.model`` (+ ``spm.vocab``), ``DEST/dict.txt`` and ``DEST/{train,valid}.{bin,idx}`` (the layout of
``fairseq-preprocess --only-source``, read by task ``data2vec_masked_lm``). One input line = one sentence; empty
lines are dropped (and counted), lines longer than ``--max-line-chars`` are split at whitespace, undecodable
UTF-8 bytes are replaced (or the line skipped / the run stopped, ``--invalid-utf8``); messages name ``file:line``.

With ``--labels LABELS.txt`` (one label per input line) the output is a ``sentence_prediction`` directory instead:
``DEST/input0/`` (text) and ``DEST/label/`` (label dictionary, or ``{split}.label`` float files with
``--regression``).

Re-encoding new text with the same model (same vocabulary, e.g. fine-tuning data or a second corpus)::

    d2v-prepare-text new.txt NEW_DEST --spm-model DEST/spm.model            # dict.txt next to spm.model
    d2v-prepare-text sents.txt GLUE_DEST --spm-model DEST/spm.model --labels labels.txt

or by hand: ``spm_encode --model DEST/spm.model < new.txt > new.spm`` then
``fairseq-preprocess --only-source --srcdict DEST/dict.txt --trainpref new.spm --destdir NEW_DEST``.
"""
import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections import Counter
from typing import List, Optional, Sequence, Tuple

logger = logging.getLogger("d2v-prepare-text")


class PrepareTextError(ValueError):
    """Unusable input; the message names the file (and line) and what to change."""


def split_long(text: str, limit: int) -> List[str]:
    """Split ``text`` into pieces of at most ``limit`` characters, at whitespace when possible."""
    out = []
    while len(text) > limit:
        cut = text.rfind(" ", 0, limit + 1)
        cut = cut if cut > 0 else limit
        out.append(text[:cut].strip())
        text = text[cut:].strip()
    return [p for p in out + [text] if p]


def raw_lines(raw: bytes) -> List[bytes]:
    parts = raw.split(b"\n")
    return parts[:-1] if parts and parts[-1] == b"" else parts


def read_lines(path: str, invalid_utf8: str = "replace", max_chars: int = 10000, allow_split: bool = True
               ) -> Tuple[List[Tuple[int, str]], dict]:
    """-> ([(1-based input line, text)], stats). Empty lines dropped; long lines split (or truncated)."""
    if not os.path.isfile(path):
        raise PrepareTextError(f"{path}: no such file")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise PrepareTextError(f"{path}: the file is empty (or only whitespace); nothing to train on")
    stats = Counter()
    where = {"invalid_utf8": [], "empty": [], "long": []}
    lines: List[Tuple[int, str]] = []
    for no, b in enumerate(raw_lines(raw), start=1):
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError as e:
            if invalid_utf8 == "error":
                raise PrepareTextError(f"{path}:{no}: invalid UTF-8 at byte {e.start} ({e.reason}); use "
                                       "--invalid-utf8 replace|skip") from None
            stats["invalid_utf8"] += 1
            where["invalid_utf8"] += [no] if len(where["invalid_utf8"]) < 5 else []
            if invalid_utf8 == "skip":
                continue
            text = b.decode("utf-8", errors="replace")
        text = " ".join(text.split())
        if not text:
            stats["empty"] += 1
            where["empty"] += [no] if len(where["empty"]) < 5 else []
            continue
        if len(text) > max_chars:
            stats["long"] += 1
            where["long"] += [no] if len(where["long"]) < 5 else []
            pieces = split_long(text, max_chars) if allow_split else [text[:max_chars]]
            lines.extend((no, p) for p in pieces)
        else:
            lines.append((no, text))
    for kind, what in (("invalid_utf8", f"invalid UTF-8 ({invalid_utf8})"), ("empty", "empty, dropped"),
                       ("long", f"longer than {max_chars} chars, {'split' if allow_split else 'truncated'}")):
        if where[kind]:
            more = f" and {stats[kind] - len(where[kind])} more" if stats[kind] > len(where[kind]) else ""
            logger.warning(f"{path}: lines {', '.join(map(str, where[kind]))}{more}: {what}")
    if not lines:
        raise PrepareTextError(f"{path}: no non-empty line after cleaning ({dict(stats)}); nothing to train on")
    return lines, dict(stats)


def read_labels(path: str, n_lines: int) -> List[Tuple[int, str]]:
    with open(path, encoding="utf-8", errors="strict") as f:
        labels = [(i, " ".join(x.decode().split())) for i, x in enumerate(raw_lines(f.read().encode()), start=1)]
    empty = [i for i, x in labels if not x]
    if empty:
        raise PrepareTextError(f"{path}:{empty[0]}: empty label")
    if len(labels) != n_lines:
        raise PrepareTextError(f"{path}: {len(labels)} labels for {n_lines} text lines; need one label per line")
    return labels


def train_spm(texts: Sequence[str], prefix: str, vocab_size: int, model_type: str, max_chars: int) -> None:
    import sentencepiece as spm
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_prefix=prefix, vocab_size=vocab_size, model_type=model_type,
            character_coverage=1.0, hard_vocab_limit=False, bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0,
            max_sentence_length=4 * max_chars + 16, input_sentence_size=2_000_000, shuffle_input_sentence=True,
            minloglevel=2)
    except RuntimeError as e:
        raise PrepareTextError(f"sentencepiece training failed: {e}. With a small corpus lower --vocab-size "
                               f"(now {vocab_size})") from None


def write_dict(sp, encoded: Sequence[List[str]], path: str) -> None:
    """dict.txt with every regular sentencepiece piece, most frequent (in the training split) first."""
    counts = Counter(p for pieces in encoded for p in pieces)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_control(i) or sp.is_unknown(i))]
    pieces.sort(key=lambda p: -counts[p])
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{p} {counts[p]}\n" for p in pieces)


def binarize(prefixes: dict, destdir: str, srcdict: Optional[str]) -> None:
    """fairseq-preprocess --only-source on text files ``prefixes[split] + '.txt'``."""
    from fairseq import options
    from fairseq_cli import preprocess
    argv = ["--only-source", "--destdir", destdir, "--workers", "1", "--dataset-impl", "mmap"]
    argv += ["--trainpref", prefixes["train"], "--validpref", prefixes["valid"]]
    argv += ["--srcdict", srcdict] if srcdict else []
    preprocess.main(options.get_preprocessing_parser().parse_args(argv))


def split_train_valid(n: int, valid_lines: int) -> int:
    """Number of validation lines (the last ones); keeps at least one training line."""
    if n < 2:
        raise PrepareTextError(f"need at least 2 non-empty lines (one for training, one for validation), got {n}")
    if valid_lines >= n:
        logger.warning(f"--valid-lines {valid_lines} >= {n} usable lines; using {max(1, n // 10)}")
        return max(1, n // 10)
    return max(1, valid_lines)


def write_split_files(tmp: str, name: str, rows: Sequence[str], n_valid: int) -> dict:
    prefixes = {}
    for split, part in (("train", rows[:-n_valid]), ("valid", rows[-n_valid:])):
        prefixes[split] = os.path.join(tmp, f"{name}.{split}")
        with open(prefixes[split], "w", encoding="utf-8") as f:
            f.writelines(r + "\n" for r in part)
    return prefixes


def prepare(raw: str, dest: str, vocab_size: int = 8000, valid_lines: int = 1000, model_type: str = "unigram",
            spm_model: Optional[str] = None, labels: Optional[str] = None, regression: bool = False,
            invalid_utf8: str = "replace", max_line_chars: int = 10000) -> dict:
    """Run the whole pipeline; returns counts. Raises ``PrepareTextError`` for unusable input."""
    import sentencepiece as spm
    lines, stats = read_lines(raw, invalid_utf8, max_line_chars, allow_split=labels is None)
    label_rows = None
    if labels:
        all_labels = dict(read_labels(labels, len(raw_lines(open(raw, "rb").read()))))
        label_rows = [all_labels[no] for no, _ in lines]
    texts = [t for _, t in lines]
    n_valid = split_train_valid(len(texts), valid_lines)
    os.makedirs(dest, exist_ok=True)
    if spm_model is None:
        train_spm(texts[:-n_valid], os.path.join(dest, "spm"), vocab_size, model_type, max_line_chars)
        spm_model = os.path.join(dest, "spm.model")
    elif os.path.abspath(os.path.dirname(spm_model)) != os.path.abspath(dest):
        shutil.copy(spm_model, os.path.join(dest, "spm.model"))
    sp = spm.SentencePieceProcessor(model_file=spm_model)
    encoded = [sp.encode(t, out_type=str) for t in texts]
    src_dict = os.path.join(os.path.dirname(os.path.abspath(spm_model)), "dict.txt")
    if not os.path.isfile(src_dict):
        write_dict(sp, encoded[:-n_valid], src_dict)
    with tempfile.TemporaryDirectory() as tmp:
        text_prefixes = write_split_files(tmp, "text", [" ".join(p) for p in encoded], n_valid)
        if label_rows is None:
            binarize(text_prefixes, dest, src_dict)
        else:
            binarize(text_prefixes, os.path.join(dest, "input0"), src_dict)
            label_dir = os.path.join(dest, "label")
            if regression:
                os.makedirs(label_dir, exist_ok=True)
                for split, p in write_split_files(label_dir, "x", label_rows, n_valid).items():
                    os.replace(p, os.path.join(label_dir, f"{split}.label"))
            else:
                binarize(write_split_files(tmp, "label", label_rows, n_valid), label_dir, None)
    counts = {"train": len(texts) - n_valid, "valid": n_valid, "vocab": sp.get_piece_size(), **stats}
    logger.info(f"{raw} -> {dest}: {counts}")
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="d2v-prepare-text", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw", help="UTF-8 text file, one sentence/paragraph per line")
    p.add_argument("dest", help="output directory")
    p.add_argument("--vocab-size", type=int, default=8000, help="sentencepiece vocabulary size (soft limit)")
    p.add_argument("--valid-lines", type=int, default=1000, help="last N usable lines form the valid split")
    p.add_argument("--model-type", choices=["unigram", "bpe"], default="unigram", help="sentencepiece model")
    p.add_argument("--spm-model", help="reuse this sentencepiece model (and the dict.txt next to it)")
    p.add_argument("--labels", help="one label per input line: write a sentence_prediction directory")
    p.add_argument("--regression", action="store_true", help="labels are floats (STS-B style)")
    p.add_argument("--invalid-utf8", choices=["replace", "skip", "error"], default="replace",
                   help="what to do with lines that are not valid UTF-8")
    p.add_argument("--max-line-chars", type=int, default=10000, help="split (pretraining) or truncate "
                                                                      "(--labels) longer lines")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s | %(message)s")
    try:
        counts = prepare(a.raw, a.dest, a.vocab_size, a.valid_lines, a.model_type, a.spm_model, a.labels,
                         a.regression, a.invalid_utf8, a.max_line_chars)
    except PrepareTextError as e:
        print(f"d2v-prepare-text: error: {e}", file=sys.stderr)
        return 2
    print(f"d2v-prepare-text: wrote {a.dest}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
