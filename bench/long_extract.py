"""Cost of whole-document extraction against document length.

    python bench/long_extract.py                      # 1k, 4k and 16k words, default encoder
    python bench/long_extract.py --words 1000 4000 16000 --repeats 5 --model_class bert2span

Documents are real text: the words of SemEval2010 papers (the LIAAD zip in the shared
datasets), one after another, cut to each length. For each length, interleaved rounds
time `KeyphraseExtractor.extract` (words to keyphrases, whole document), the bare
encoder's forward over the very same windows, and the head alone on fixed word vectors
(its own arithmetic, decoding included). The extractor should cost at most 1.10x the
encoder plus the head. Peak memory is the growth of the resident set over one
extraction (sampled every millisecond), each length in a fresh process. Time and memory exponents are the
log-log slopes over the lengths (1 is linear).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import common
import numpy as np
import torch

from bertkpe.options import resolve_encoder
from bertkpe.data.batching import collate
from bertkpe.data.features import build_features
from bertkpe.data.sources import liaad_tokenize
from bertkpe.data.tokenizers import load_tokenizer
from bertkpe.decoding import decode_batch
from bertkpe.extractor import KeyphraseExtractor
from bertkpe.models import build_model

MAX_DOC_TOKENS = 1 << 20  # no cap: the lengths measured are read whole


def corpus_words(corpus: Path, count: int) -> list[str]:
    words: list[str] = []
    with zipfile.ZipFile(corpus) as archive:
        for name in sorted(n for n in archive.namelist() if "/docsutf8/" in n and n.endswith(".txt")):
            words.extend(liaad_tokenize(archive.read(name).decode("utf-8")))
            if len(words) >= count:
                break
    return words[:count]


def extractor_for(model_class: str) -> KeyphraseExtractor:
    encoder = resolve_encoder("default")
    torch.manual_seed(0)
    model = build_model(model_class, encoder).eval()
    return KeyphraseExtractor(model, load_tokenizer(encoder), device="cpu", max_doc_tokens=MAX_DOC_TOKENS,
                              stemmer="porter")


def peak_memory(args, num_words: int) -> float:
    """MB the maximum resident set grows by over one extraction, in a fresh process."""
    done = subprocess.run([sys.executable, __file__, "--measure_memory", str(num_words), "--corpus", args.corpus,
                           "--model_class", args.model_class, *(["--threads", str(args.threads)] if args.threads
                                                                 else [])],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure_memory(args) -> None:
    """The resident set's peak over one extraction above what it was just before, sampled
    every millisecond (loading the model peaks higher than a short extraction, so the
    process's maximum alone would hide it)."""
    extractor = extractor_for(args.model_class)
    text = " ".join(corpus_words(Path(args.corpus), args.measure_memory))
    extractor.extract(" ".join(text.split()[:200]))  # warm every code path
    before = resident_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_mb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    extractor.extract(text)
    done.set()
    sampler.join()
    print(max(peak[0], resident_mb()) - before)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--corpus", default=str(common.DEFAULT_DATASETS / "liaad" / "SemEval2010.zip"))
    parser.add_argument("--model_class", default="bert2joint")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--measure_memory", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.measure_memory:
        measure_memory(args)
        return 0
    extractor = extractor_for(args.model_class)
    model = extractor.model
    words = corpus_words(Path(args.corpus), max(args.words))
    rows = []
    for count in args.words:
        text = " ".join(words[:count])
        (doc,) = build_features([{"url": "d", "doc_words": extractor.split_words(text), "start_end_pos": [],
                                  "stemmer": "porter"}], extractor.tokenizer, extractor.options)
        batch = collate([doc], pad_token_id=extractor.pad_token_id)
        with torch.inference_mode():
            vectors = model.word_vectors(batch)

        def full():
            return extractor.extract(text, top_k=10)

        def bare():
            with torch.inference_mode():
                return model.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

        def head():
            with torch.inference_mode():
                return decode_batch(model.head(vectors, batch, False).mention_scores, batch, [doc], 10)

        samples = common.interleaved({"extract": full, "encoder": bare, "head": head}, args.repeats)
        medians = {name: common.median(values) for name, values in samples.items()}
        rows.append({"words": count, "tokens": doc.doc_tokens, "windows": doc.num_windows, **medians,
                     "ratio": medians["extract"] / (medians["encoder"] + medians["head"]),
                     "paired_ratio": common.median([e / (b + h) for e, b, h in zip(
                         samples["extract"], samples["encoder"], samples["head"])]),
                     "peak_mb": peak_memory(args, count)})
    lengths = np.log([row["words"] for row in rows])
    time_exponent = float(np.polyfit(lengths, np.log([row["extract"] for row in rows]), 1)[0])
    memory_exponent = float(np.polyfit(lengths, np.log([max(row["peak_mb"], 1e-3) for row in rows]), 1)[0])
    print(common.machine_line(common.machine_info()))
    print(f"{args.model_class}, default encoder, {args.repeats} interleaved rounds, medians\n")
    print("| words | sub-tokens | windows | extract s | encoder s | head s | extract / (encoder + head) | "
          "paired | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['words']} | {row['tokens']} | {row['windows']} | {row['extract']:.3f} | {row['encoder']:.3f} "
              f"| {row['head']:.3f} | {row['ratio']:.3f}x | {row['paired_ratio']:.3f}x | {row['peak_mb']:.0f} |")
    print(f"\nexponents over the lengths: time {time_exponent:.3f}, peak memory {memory_exponent:.3f}")
    common.write_json(args.json, {"rows": rows, "time_exponent": time_exponent, "memory_exponent": memory_exponent,
                                  "machine": common.machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
