"""Runnable examples: the README's quickstart and a minimal third-party driver."""
