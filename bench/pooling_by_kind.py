"""Document-pooling weights for each kind of text, chosen on dev.

    python bench/pooling_by_kind.py --checkpoint results/RUN/best \
        --corpus papers=data/prepro_dataset/semeval2010 --corpus news=data/prepro_dataset/kpcrowd \
        --corpus pages=data/prepro_dataset/openkp

Each corpus is a folder `bertkpe preprocess` wrote (its dataset class read from its
preprocess_stats.json). The checkpoint scores the dev and test documents of each, read
whole as `scripts/test.py` reads them (windows sharing the default overlap); the dev
mention scores are then decoded under every pair of weights of the grid
(`long_documents.GRID`: occurrence count, first position) and the pair with the best dev
score by the dataset class's metric is chosen (on a tie, the smaller weights). Printed:
per kind, max pooling, the papers weights in force, and the chosen pair, on dev and test,
by the corpus's own scorer. Only documents longer than 512 words are ranked differently.
`--json` keeps the numbers.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import common  # noqa: F401  (puts the repository on the path when bertkpe is not installed)
from long_documents import GRID, decode, mention_scores

from bertkpe.data.features import FeatureOptions, read_records
from bertkpe.data.preprocessed import PreprocessedData
from bertkpe.data.tokenizers import load_tokenizer
from bertkpe.dataset_classes import dataset_class
from bertkpe.decoding import DOCUMENT_POOLING, MAX_POOLING, REFERENCE_WORDS, PhrasePooling
from bertkpe.evaluation import scoring_of
from bertkpe.metrics import read_keyphrase_file, score
from bertkpe.models import load_model, read_kpe_config
from bertkpe.options import DEFAULT_MAX_DOC_TOKENS, document_options


def split_scores(predictions, references, scoring, metric: str) -> dict[str, float]:
    scores = score(predictions, references, scoring)
    return {name: scores[name] for name in dict.fromkeys([metric, "F1@5", "F1@10"]) if name in scores}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--corpus", action="append", required=True, metavar="KIND=FOLDER",
                        help="a kind of text and a preprocessed corpus of it; may be repeated")
    parser.add_argument("--workdir", default=str(common.DEFAULT_WORKDIR / "pooling_by_kind"))
    parser.add_argument("--batch_windows", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    checkpoint = Path(args.checkpoint)
    kpe = read_kpe_config(checkpoint)
    model = load_model(checkpoint).eval()
    tokenizer = load_tokenizer(str(checkpoint))
    max_token = int(kpe.get("max_token") or 510)
    max_doc_tokens, overlap = document_options(max_token, DEFAULT_MAX_DOC_TOKENS, None)  # as `scripts/test.py` reads
    options = FeatureOptions(str(checkpoint), max_token, int(kpe["max_phrase_words"]), max_doc_tokens=max_doc_tokens,
                             window_overlap=overlap)
    report = {}
    for spec in args.corpus:
        kind, _, folder = spec.partition("=")
        folder = Path(folder)
        data = PreprocessedData.named(folder.parent, folder.name)
        metric = dataset_class(data.dataset_class).best_metric
        parts = {}
        for split in ("dev", "eval"):
            if not data.reference_file(split).is_file():  # OpenKP's test split is published without keyphrases
                continue
            records = read_records(data.split_file(split))
            features, scores, seconds = mention_scores(
                model, tokenizer, records, options, args.batch_windows,
                Path(args.workdir) / checkpoint.resolve().parent.name / f"{data.name}.{split}.overlap{overlap}.pt")
            parts[split] = (features, scores, read_keyphrase_file(data.reference_file(split)), scoring_of(data, split))
        long_docs = sum(doc.num_words > REFERENCE_WORDS for doc in parts["dev"][0])
        grid = []
        for frequency, position in itertools.product(GRID["frequency_weight"], GRID["position_weight"]):
            pooling = PhrasePooling("document", frequency, position)
            features, scores, references, scoring = parts["dev"]
            grid.append((split_scores(decode(features, scores, pooling), references, scoring, metric)[metric],
                         frequency, position))
        best, frequency, position = max(grid, key=lambda row: (row[0], -row[1] - row[2]))
        rows = {"max pooling": MAX_POOLING, "papers weights (in force)": DOCUMENT_POOLING["papers"],
                f"chosen on dev: frequency {frequency}, position {position}":
                    PhrasePooling("document", frequency, position)}
        table = {name: {split: split_scores(decode(parts[split][0], parts[split][1], pooling), parts[split][2],
                                            parts[split][3], metric) for split in parts}
                 for name, pooling in rows.items()}
        report[kind] = {"corpus": data.name, "metric": metric, "dev_documents_over_512_words": long_docs,
                        "chosen": [frequency, position], "grid": grid, "table": table}
        tested = f"{len(parts['eval'][0])} test" if "eval" in parts else "no test references"
        print(f"\n{kind}: {data.name} ({len(parts['dev'][0])} dev documents, {long_docs} longer than "
              f"{REFERENCE_WORDS} words; {tested}); chosen by dev {metric}")
        columns = list(next(iter(table.values()))["dev"])
        titles = {"dev": "dev", "eval": "test"}
        print("| pooling | " + " | ".join(f"{titles[split]} {c}" for split in parts for c in columns) + " |")
        print("|---|" + "---|" * (len(parts) * len(columns)))
        for name, splits in table.items():
            print(f"| {name} | " + " | ".join(f"{splits[split][c]:.4f}" for split in parts for c in columns) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
