"""Driver tests."""
