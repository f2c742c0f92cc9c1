"""Supervised keyphrase extraction with pretrained transformers."""

__all__ = ["KeyphraseExtractor"]


def __getattr__(name: str):
    # Lazy: `import bertkpe` stays cheap (no torch/transformers) until the API is used.
    if name == "KeyphraseExtractor":
        from bertkpe.extractor import KeyphraseExtractor

        return KeyphraseExtractor
    raise AttributeError(f"module 'bertkpe' has no attribute {name!r}")
