"""Helpers the project's own tests share."""
