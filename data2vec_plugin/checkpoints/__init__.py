"""Checkpoint formats, safe loading, conversion, feature extraction and Hugging Face export."""
