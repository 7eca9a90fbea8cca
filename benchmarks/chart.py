"""chart.png: ours/raw and ours/best peer per operation and driver (matplotlib, imported here only).

Two panels of horizontal bars, one bar per operation and driver; a bar under its target is red,
and each target is drawn as a tick on its bar's line. Ratios are on a log scale, so 0.5 and 2
are equally far from 1.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.results import PEER_TARGET, Results

__all__ = ["write_chart"]


def write_chart(results: Results, path: Path) -> None:
    """Draw the two panels of ``results`` into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw_rows = [row for row in results.rows if row.raw_ratio is not None]
    peer_rows = [row for row in results.rows if row.best_peer is not None]
    height = max(4.0, 0.22 * max(len(raw_rows), len(peer_rows), 1) + 1.5)
    figure, (left, right) = plt.subplots(1, 2, figsize=(17, height), constrained_layout=True)

    labels = [f"{row.driver}  {row.operation}" for row in raw_rows]
    ratios = [row.raw_ratio or 0.0 for row in raw_rows]
    colours = ["tab:red" if row.target is not None and ratio < row.target else "tab:blue"
               for row, ratio in zip(raw_rows, ratios, strict=True)]
    left.barh(range(len(raw_rows)), ratios, color=colours)
    for index, row in enumerate(raw_rows):
        if row.target is not None:
            left.plot([row.target, row.target], [index - 0.4, index + 0.4], color="black")
    left.set_yticks(range(len(raw_rows)), labels, fontsize=7)
    left.invert_yaxis()
    left.set_xscale("log")
    left.axvline(1.0, color="grey", linewidth=0.8)
    left.set_title("ours / raw client (throughput; black tick = target)")

    labels = [f"{row.driver}  {row.operation}  vs {row.best_peer[0]}"  # type: ignore[index]
              for row in peer_rows]
    ratios = [row.best_peer[1] for row in peer_rows]  # type: ignore[index]
    colours = ["tab:red" if ratio < PEER_TARGET else "tab:green" for ratio in ratios]
    right.barh(range(len(peer_rows)), ratios, color=colours)
    right.set_yticks(range(len(peer_rows)), labels, fontsize=7)
    right.invert_yaxis()
    right.set_xscale("log")
    right.axvline(PEER_TARGET, color="black", linewidth=0.8)
    right.set_title("ours / best peer (throughput; target >= 1)")
    figure.suptitle(f"agentx-persistence benchmarks ({results.settings['mode']} run)")
    figure.savefig(path, dpi=110)
    plt.close(figure)
