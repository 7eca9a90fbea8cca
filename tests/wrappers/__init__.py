"""Tests of kvstore.wrappers."""
