"""Helper scripts the SQLite tests run in separate processes."""
