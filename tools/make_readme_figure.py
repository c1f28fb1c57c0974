"""Render the README's picture from the simulation (never drawn by hand).

    python tools/make_readme_figure.py     # writes docs/retry-jitter.png
"""

from __future__ import annotations

from pathlib import Path

from simulations.retry import draw_jitter_comparison

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    target = ROOT / "docs" / "retry-jitter.png"
    target.parent.mkdir(exist_ok=True)
    draw_jitter_comparison(clients=100, seed=1).savefig(target, dpi=80)
    print(f"wrote {target}")
