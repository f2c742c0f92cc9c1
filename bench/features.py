"""Item 1: feature building (tokenize + mentions + phrase ids + labels), documents/s.

Ours: `bertkpe.data.features.build_features` over chunks of records in memory (one batched
fast-tokenizer call per chunk, numpy phrase ids) in one process, and the whole path of a
training run with all cores: `bertkpe.data.store.open_store` reading the preprocessed file,
building in worker processes and writing a feature store (in a temporary folder).
Baseline, in the same run: the original BERT-KPE feature code re-implemented here
(per-word `tokenizer.tokenize(word)` calls, a Python dict phrase table with one list
entry per mention, per-n-gram stemming without a cache, Python label loops).

    python bench/features.py [--quick] [--workers 2]

`--vdom` measures instead what OpenKP's VDOM cost `open_store` when every preprocessed
record carried it: the OpenKP train file with and without VDOM, read and built into a
store (JSON parsing included, no cache folder), in the same run.

    python bench/features.py --vdom [--repeats 31]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

import common  # noqa: E402

BARS = {"kp20k": 400.0, "openkp": 150.0}  # docs/s with all cores (2)


# ----------------------------------------------------------------------------- the original toolkit's approach


def baseline_tokenize_for_bert(doc_words, tokenizer, unk_token):
    """BERT-KPE `tokenize_for_bert`: one tokenizer call per word."""
    valid_mask, all_doc_tokens, tok_to_orig_index, orig_to_tok_index = [], [], [], []
    for i, token in enumerate(doc_words):
        orig_to_tok_index.append(len(all_doc_tokens))
        sub_tokens = tokenizer.tokenize(token)
        if len(sub_tokens) < 1:
            sub_tokens = [unk_token]
        for num, sub_token in enumerate(sub_tokens):
            tok_to_orig_index.append(i)
            all_doc_tokens.append(sub_token)
            valid_mask.append(1 if num == 0 else 0)
    return {"tokens": all_doc_tokens, "valid_mask": valid_mask, "tok_to_orig_index": tok_to_orig_index,
            "orig_to_tok_index": orig_to_tok_index}


def baseline_ngram_features(doc_words, max_gram, stemmer=None):
    """BERT-KPE `get_ngram_features`: a dict phrase -> index and a list per n of mention indices."""
    phrase2index: dict[str, int] = {}
    tot_phrase_list: list[str] = []
    tot_mention_list: list[list[int]] = []
    for n in range(1, max_gram + 1):
        valid_length = len(doc_words) - n + 1
        if valid_length < 1:
            break
        mention_list = []
        for i in range(valid_length):
            n_gram = " ".join(doc_words[i:i + n]).lower()
            if stemmer is not None:  # `whether_stem_existing`: stem every word of every n-gram
                n_gram = " ".join(stemmer(word) for word in n_gram.split())
            index = phrase2index.get(n_gram)
            if index is None:
                index = len(tot_phrase_list)
                phrase2index[n_gram] = index
                tot_phrase_list.append(n_gram)
            mention_list.append(index)
        tot_mention_list.append(mention_list)
    return {"tot_phrase_list": tot_phrase_list, "tot_mention_list": tot_mention_list}


def baseline_labels(num_words, start_end_pos, max_gram, tot_mention_list, num_phrases):
    """`get_ngram_label` + phrase labels + BIOEU tags, as Python loops."""
    positions = sorted({(s, e) for occurrences in start_end_pos for s, e in occurrences})
    kept = [(s, e) for s, e in positions if e - s < max_gram and e < num_words]
    chunk_label = [[0] * len(row) for row in tot_mention_list]
    ngram_label = [0] * num_phrases
    for s, e in kept:
        chunk_label[e - s][s] = 1
        ngram_label[tot_mention_list[e - s][s]] = 1
    tags = ["O"] * num_words
    for s, e in kept:
        if any(tag != "O" for tag in tags[s:e + 1]):
            continue
        if s == e:
            tags[s] = "U"
        else:
            tags[s] = "B"
            for i in range(s + 1, e):
                tags[i] = "I"
            tags[e] = "E"
    return chunk_label, ngram_label, tags


def baseline_build(records, tokenizer, max_token=510, max_gram=5):
    from nltk.stem.porter import PorterStemmer

    porter = PorterStemmer().stem
    cls_token, sep_token, unk_token = tokenizer.cls_token, tokenizer.sep_token, tokenizer.unk_token
    out = []
    for record in records:
        doc_words = record["doc_words"]
        tokenized = baseline_tokenize_for_bert(doc_words, tokenizer, unk_token)
        tokens, valid_mask = tokenized["tokens"], tokenized["valid_mask"]
        if len(tokens) > max_token:  # cut at max_token, keep the words whose first sub-token survives
            tokens, valid_mask = tokens[:max_token], valid_mask[:max_token]
            doc_words = doc_words[:sum(valid_mask)]
        src_ids = tokenizer.convert_tokens_to_ids([cls_token] + tokens + [sep_token])
        stemmer = porter if record.get("stemmer") == "porter" else None
        ngrams = baseline_ngram_features(doc_words, max_gram, stemmer)
        labels = baseline_labels(len(doc_words), record.get("start_end_pos", []), max_gram,
                                 ngrams["tot_mention_list"], len(ngrams["tot_phrase_list"]))
        out.append((src_ids, valid_mask, ngrams, labels))
    return out


# ----------------------------------------------------------------------------- VDOM in preprocessed records


def write_vdom_variants(args) -> dict[str, Path]:
    """The preprocessed OpenKP train file without VDOM and with each record's source VDOM
    appended, as `bertkpe preprocess` wrote it before it stopped copying VDOM."""
    folder = common.preprocessed(args.workdir, args.datasets, "openkp")
    records = [{key: value for key, value in record.items() if key != "VDOM"}
               for record in common.read_jsonl(folder / "openkp.train.json")]
    source = Path(args.datasets) / "openkp" / "OpenKPTrain.jsonl"
    vdom = {record["url"]: record["VDOM"] for record in common.read_jsonl(source)}
    if args.quick:
        records = records[:100]
    variants = {"without VDOM": records, "with VDOM": [{**record, "VDOM": vdom[record["url"]]} for record in records]}
    files = {}
    for variant, lines in variants.items():
        path = Path(args.workdir) / "vdom" / variant.replace(" ", "_") / "openkp.train.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        files[variant] = path
    return files


def records_memory_mb(path: Path, read_records) -> float:
    """Python memory the parsed records of the whole file would hold (a store build holds
    one chunk of them at a time)."""
    tracemalloc.start()
    records = read_records(path)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del records
    return held / 1e6


def vdom_comparison(args, repeats: int) -> dict:
    from bertkpe.data import matching
    from bertkpe.data.features import FeatureOptions, read_records
    from bertkpe.data.store import open_store
    from bertkpe.data.tokenizers import load_tokenizer

    encoder = common.default_encoder()
    tokenizer = load_tokenizer(encoder)
    options = FeatureOptions(tokenizer=encoder, max_token=510, max_phrase_words=5)
    files = write_vdom_variants(args)
    # torch and transformers leave ~270k tracked objects: a full collection over them takes
    # ~0.14 s, lands at random and would swamp a 5 ms parse. A VDOM string is not a tracked
    # object, so freezing them changes nothing between the variants, only the noise.
    gc.freeze()

    def load(path):
        def run():
            matching.get_normalizer.cache_clear()
            return open_store(path, tokenizer, options, cache_dir=None, workers=1)
        return run

    paths = ("open_store", "read_records only")
    fns = {}
    for variant, file in files.items():
        fns[f"open_store, {variant}"] = load(file)
        fns[f"read_records only, {variant}"] = lambda file=file: read_records(file)
    samples = common.interleaved(fns, repeats, warmup=1)
    docs = len(read_records(files["without VDOM"]))
    results = {"machine": common.machine_info(), "repeats": repeats, "docs": docs, "rows": []}
    for variant, file in files.items():
        file_mb, records_mb = file.stat().st_size / 1e6, records_memory_mb(file, read_records)
        for path in paths:
            name, plain = f"{path}, {variant}", f"{path}, without VDOM"
            times = samples[name]
            results["rows"].append({
                "what": name, "file_mb": file_mb, "records_mb": records_mb,
                "seconds": common.median(times), "spread": common.spread(times),
                "docs_per_s": docs / common.median(times),
                "ratio": common.median(times) / common.median(samples[plain]),
                "paired_ratio": common.paired_ratio(times, samples[plain]),
                "cpu_ratio": common.median(common.CPU_SAMPLES[name]) / common.median(common.CPU_SAMPLES[plain])})
    return results


def vdom_report(results) -> str:
    lines = [f"### Preprocessed OpenKP train records with and without VDOM ({results['docs']} docs, "
             f"{results['repeats']} timed runs, median)", "", common.machine_line(results["machine"]), "",
             "| path | file MB | records in memory MB | s (median) | spread s | docs/s | with / without (medians) "
             "| paired per-round | by process CPU time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        lines.append(f"| {row['what']} | {row['file_mb']:.2f} | {row['records_mb']:.1f} | {row['seconds']:.3f} | "
                     f"{row['spread']} | {row['docs_per_s']:.0f} | {row['ratio']:.2f}x | {row['paired_ratio']:.2f}x | "
                     f"{row['cpu_ratio']:.2f}x |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- benchmark


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel run")
    parser.add_argument("--vdom", action="store_true",
                        help="only measure open_store on OpenKP train records with VDOM against without")
    args = parser.parse_args(argv)
    common.apply_threads(args)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.vdom:
        results = vdom_comparison(args, repeats)
        print(vdom_report(results))
        common.write_json(args.json, results)
        return results

    import torch

    from bertkpe.data import matching
    from bertkpe.data.features import FeatureOptions, build_features
    from bertkpe.data.store import CHUNK_DOCUMENTS, open_store
    from bertkpe.data.tokenizers import load_tokenizer

    encoder = common.default_encoder()
    tokenizer = load_tokenizer(encoder)
    options = FeatureOptions(tokenizer=encoder, max_token=510, max_phrase_words=5)
    results = {"machine": common.machine_info(), "repeats": repeats, "workers": args.workers, "rows": []}

    def ours(records):
        def run():
            matching.get_normalizer.cache_clear()  # a fresh process's cold stem cache, every run
            return [doc for start in range(0, len(records), CHUNK_DOCUMENTS)
                    for doc in build_features(records[start:start + CHUNK_DOCUMENTS], tokenizer, options)]
        return run

    def store(path, workers):
        def run():
            matching.get_normalizer.cache_clear()
            return open_store(path, tokenizer, options, cache_dir=None, workers=workers)
        return run

    for dataset_class in ("kp20k", "openkp"):
        folder = common.preprocessed(args.workdir, args.datasets, dataset_class)
        records = common.read_jsonl(folder / f"{dataset_class}.train.json")
        if args.quick:
            records = records[:300]
        source = Path(args.workdir) / "features" / f"{dataset_class}.train.json"
        common.write_jsonl(source, records)
        # the two paths must agree on what they produce (sanity, untimed)
        check_ours = build_features(records[:20], tokenizer, options)
        check_base = baseline_build(records[:20], tokenizer)
        for mine, theirs in zip(check_ours, check_base):
            assert mine.input_ids.tolist() == list(theirs[0]), "baseline and ours tokenize differently"
            # ours drops n-grams with a punctuation word from the candidates; the original kept them
            assert mine.num_phrases <= len(theirs[2]["tot_phrase_list"]), "phrase counts differ"
        fns = {
            "ours, 1 process": ours(records),
            f"ours, file to feature store, {args.workers} workers": store(source, args.workers),
            "baseline (original approach), 1 process": lambda: baseline_build(records, tokenizer),
        }
        samples = common.interleaved(fns, repeats, warmup=1)
        words = sum(min(len(r["doc_words"]), 510) for r in records)
        for name, times in samples.items():
            rate = len(records) / common.median(times)
            results["rows"].append({"dataset": dataset_class, "what": name, "docs": len(records),
                                    "seconds": common.median(times), "spread": common.spread(times),
                                    "docs_per_s": rate, "words_per_doc": words / len(records)})
        base = next(r for r in results["rows"] if r["dataset"] == dataset_class and r["what"].startswith("baseline"))
        for row in results["rows"]:
            if row["dataset"] == dataset_class and not row["what"].startswith("baseline"):
                row["speedup_vs_baseline"] = row["docs_per_s"] / base["docs_per_s"]
                if "workers" in row["what"]:
                    row["bar"] = BARS[dataset_class]
                    row["met"] = row["docs_per_s"] >= BARS[dataset_class]
    results["torch_threads"] = torch.get_num_threads()
    print(report(results))
    common.write_json(args.json, results)
    return results


def report(results) -> str:
    lines = [f"### 1. Feature building (train split, cache off, {results['repeats']} timed runs, median)", "",
             common.machine_line(results["machine"]), "",
             "| data | path | docs | words/doc | s (median) | spread s | docs/s | vs baseline | bar | |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        speed = f"{row['speedup_vs_baseline']:.1f}x" if "speedup_vs_baseline" in row else "1.0x"
        bar = f">= {row['bar']:.0f}" if "bar" in row else ""
        met = common.bar(row["met"]) if "met" in row else ""
        lines.append(f"| {row['dataset']} | {row['what']} | {row['docs']} | {row['words_per_doc']:.0f} | "
                     f"{row['seconds']:.3f} | {row['spread']} | {row['docs_per_s']:.0f} | {speed} | {bar} | {met} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
