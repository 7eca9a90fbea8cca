"""Helpers run as subprocesses by the filesystem driver's tests."""
