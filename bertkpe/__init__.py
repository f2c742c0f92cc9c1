"""Supervised keyphrase extraction with pretrained transformers."""

__all__ = ["KeyphraseExtractor", "push_to_hub"]


def __getattr__(name: str):
    # Lazy: `import bertkpe` stays cheap (no torch/transformers) until the API is used.
    if name == "KeyphraseExtractor":
        from bertkpe.extractor import KeyphraseExtractor

        return KeyphraseExtractor
    if name == "push_to_hub":
        from bertkpe.hub import push_to_hub

        return push_to_hub
    raise AttributeError(f"module 'bertkpe' has no attribute {name!r}")
