"""Item 1: feature building (tokenize + mentions + phrase ids + labels), documents/s.

Ours: `bertkpe.data.features.build_all` (one batched fast-tokenizer call per chunk,
numpy phrase ids), single process and with all cores (worker processes), no cache.
Baseline, in the same run: the original BERT-KPE feature code re-implemented here
(per-word `tokenizer.tokenize(word)` calls, a Python dict phrase table with one list
entry per mention, per-n-gram stemming without a cache, Python label loops).

    python bench/features.py [--quick] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import sys
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


# ----------------------------------------------------------------------------- benchmark


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel run")
    args = parser.parse_args(argv)
    common.apply_threads(args)
    repeats = args.repeats or (1 if args.quick else 3)

    import torch

    from bertkpe.data import matching
    from bertkpe.data.features import FeatureOptions, build_all, load_tokenizer

    encoder = common.default_encoder()
    tokenizer = load_tokenizer(encoder)
    options = FeatureOptions(tokenizer=encoder, max_token=510, max_phrase_words=5)
    results = {"machine": common.machine_info(), "repeats": repeats, "workers": args.workers, "rows": []}

    def ours(records, workers):
        def run():
            matching.get_normalizer.cache_clear()  # a fresh process's cold stem cache, every run
            return build_all(records, tokenizer, options, workers=workers)
        return run

    for dataset_class in ("kp20k", "openkp"):
        folder = common.preprocessed(args.workdir, args.datasets, dataset_class)
        records = common.read_jsonl(folder / f"{dataset_class}.train.json")
        if args.quick:
            records = records[:300]
        # the two paths must agree on what they produce (sanity, untimed)
        check_ours = build_all(records[:20], tokenizer, options, workers=1)
        check_base = baseline_build(records[:20], tokenizer)
        for mine, theirs in zip(check_ours, check_base):
            assert mine.input_ids.tolist() == list(theirs[0]), "baseline and ours tokenize differently"
            # ours drops n-grams with a punctuation word from the candidates; the original kept them
            assert mine.num_phrases <= len(theirs[2]["tot_phrase_list"]), "phrase counts differ"
        fns = {
            "ours, 1 process": ours(records, 1),
            f"ours, {args.workers} workers": ours(records, args.workers),
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
