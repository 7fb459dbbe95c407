"""Plots of evaluation results (PNG, matplotlib's Agg backend: no display needed).

Every function takes the flat result dicts of :func:`gwn_fast.experiment.run` (or rows of
a sweep's ``results.jsonl``) and writes one PNG; they return the path written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

__all__ = ["QUALITY_KEYS", "plot_beta_rates", "plot_r0_vs_mi", "plot_rd", "quality_of"]

# What "quality" means per dataset in RD plots (higher is better).
QUALITY_KEYS = {"digits": ("acc1", "acc2"), "synthetic": ("psnr1", "psnr2"), "stereo": ("psnr1", "psnr2")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def quality_of(result: dict) -> float:
    """The sum of both receivers' quality (accuracies, or PSNRs in dB)."""
    k1, k2 = QUALITY_KEYS.get(result.get("dataset", "digits"), ("acc1", "acc2"))
    return float(result[k1]) + float(result[k2])


def _unit(results):
    from gwn_fast.recipes import RATE_UNITS

    return RATE_UNITS.get(results[0].get("dataset", ""), results[0].get("unit", ""))


def plot_beta_rates(results: Sequence[dict], path, mutual_information: float | None = None, title: str = "") -> Path:
    """Stacked R0/R1/R2 bars per beta (real bitstreams), with the likelihood estimate of R0
    as a marker and the mutual information as a line."""
    plt = _pyplot()
    rows = sorted(results, key=lambda r: r["beta"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"beta={r['beta']:g}" for r in rows]
    x = range(len(rows))
    bottom = [0.0] * len(rows)
    for key, colour, name in (("r0", "tab:purple", "R0 common"), ("r1", "tab:blue", "R1 private"), ("r2", "tab:orange", "R2 private")):
        values = [r[key] for r in rows]
        axes[0].bar(x, values, bottom=bottom, color=colour, label=name)
        bottom = [b + v for b, v in zip(bottom, values)]
    axes[0].scatter(x, [r.get("est_r0", float("nan")) for r in rows], color="k", marker="_", s=300, label="R0 estimate", zorder=3)
    if mutual_information is not None:
        axes[0].axhline(mutual_information, color="k", linestyle="--", label=f"I = {mutual_information:.2f} bits")
    axes[0].set_xticks(list(x), labels)
    axes[0].set_ylabel(f"rate ({_unit(rows)}, real bytes)")
    axes[0].set_title("channel rates")
    axes[0].legend(fontsize=8)
    width = 0.38
    axes[1].bar([i - width / 2 for i in x], [r["rate_transmit"] for r in rows], width, label="Rt = R0+R1+R2")
    axes[1].bar([i + width / 2 for i in x], [r["rate_receive"] for r in rows], width, label="Rr = 2R0+R1+R2")
    axes[1].set_xticks(list(x), labels)
    axes[1].set_title("transmit vs receive rate")
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(plt, fig, path)


def plot_rd(results: Sequence[dict], path, group: str = "architecture", theory: Sequence[dict] | None = None) -> Path:
    """Rate-quality curves, one per ``group`` value, for the transmit rate (left) and the
    receive rate (right). ``theory``: optional ``synthetic_curves`` rows drawn as rate vs
    distortion is not comparable to quality, so they go on a third panel with the learned
    runs' total rate per position against their MSE."""
    plt = _pyplot()
    curves = defaultdict(list)
    for r in results:
        curves[r.get(group, "")].append(r)
    panels = 3 if theory else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    for name, rows in sorted(curves.items()):
        rows = sorted(rows, key=lambda r: r["rate_transmit"])
        for ax, key in zip(axes[:2], ("rate_transmit", "rate_receive")):
            ax.plot([r[key] for r in rows], [quality_of(r) for r in rows], "o-", label=str(name))
    for ax, title in zip(axes[:2], ("transmit rate Rt", "receive rate Rr")):
        ax.set_xlabel(f"{title} ({_unit(results)})")
        ax.set_ylabel("quality (sum over receivers)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if theory:
        ax = axes[2]
        ax.plot([t["distortion"] for t in theory], [t["rate_joint"] for t in theory], "k-", label="joint R(D) (BA)")
        ax.plot([t["distortion"] for t in theory], [t["rate_independent"] for t in theory], "k--", label="independent (BA)")
        for name, rows in sorted(curves.items()):
            # MSE on the [-1, 1] symbol scale per position: mean of both tasks' MSE.
            pts = sorted((r["rate_transmit"], (r["mse1"] + r["mse2"]) / 2) for r in rows if "mse1" in r)
            if pts:
                ax.plot([d for _, d in pts], [rt for rt, _ in pts], "o", label=f"learned {name} (Rt)")
        ax.set_xlabel("distortion (MSE per position)")
        ax.set_ylabel("bits per position")
        ax.set_title("synthetic source vs Blahut-Arimoto")
        ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_r0_vs_mi(results: Sequence[dict], path, mutual_information: float) -> Path:
    """R0 (real bytes and estimate) against beta, with the mutual information line."""
    plt = _pyplot()
    rows = sorted(results, key=lambda r: r["beta"])
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([r["beta"] for r in rows], [r["r0"] for r in rows], "o", label="R0, real bytes")
    ax.plot([r["beta"] for r in rows], [r.get("est_r0", float("nan")) for r in rows], "x", label="R0, estimate")
    ax.axhline(mutual_information, color="k", linestyle="--", label=f"mutual information {mutual_information:.2f}")
    ax.set_xlabel("beta")
    ax.set_ylabel(f"R0 ({_unit(rows)})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)
