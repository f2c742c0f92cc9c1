"""Supervised keyphrase extraction with pretrained transformers."""
