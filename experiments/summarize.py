"""Tables (markdown, printed) and figures (experiments/figures/*.png) from experiments/runs.

    python experiments/summarize.py

Every number comes from a run's result.json: rates from real bitstreams (the likelihood
estimate beside them), qualities of the decoded predictions.
"""

import json
from collections import defaultdict
from pathlib import Path

from gwn_fast import plots
from gwn_fast.evaluate import bd_rate

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
FIGURES = HERE / "figures"


def load(block):
    return [json.loads(p.read_text()) for p in sorted((RUNS / block).glob("*/result.json"))]


def table(rows, columns):
    print("| " + " | ".join(c for c, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(fmt(r) if callable(fmt) else format(r.get(fmt, float("nan")), ".3g") for _, fmt in columns) + " |")
    print()


DIGIT_COLUMNS = [
    ("setting", lambda r: r["setting"]),
    ("arch", lambda r: r["architecture"]),
    ("beta", lambda r: f"{r['beta']:g}"),
    ("alpha", lambda r: f"{r['alpha']}" if r["alpha"] is not None else "0.1"),
    ("seed", lambda r: str(r["seed"])),
    ("epochs", lambda r: str(r["epochs"])),
    ("R0", lambda r: f"{r['r0']:.2f}"),
    ("R0 est", lambda r: f"{r['est_r0']:.2f}"),
    ("R1", lambda r: f"{r['r1']:.2f}"),
    ("R2", lambda r: f"{r['r2']:.2f}"),
    ("Rt", lambda r: f"{r['rate_transmit']:.2f}"),
    ("Rr", lambda r: f"{r['rate_receive']:.2f}"),
    ("acc digit", lambda r: f"{r['acc1']:.3f}"),
    ("acc colour", lambda r: f"{r['acc2']:.3f}"),
    ("I(digit;colour)", lambda r: f"{r['mutual_information_bits']:.2f}"),
    ("train s", lambda r: f"{r['train_s']:.0f}"),
]
REGRESSION_COLUMNS = [
    ("arch", lambda r: r["architecture"]),
    ("beta", lambda r: f"{r['beta']:g}"),
    ("alpha", lambda r: f"{r['alpha']}"),
    ("R0", lambda r: f"{r['r0']:.4f}"),
    ("R0 est", lambda r: f"{r['est_r0']:.4f}"),
    ("R1", lambda r: f"{r['r1']:.4f}"),
    ("R2", lambda r: f"{r['r2']:.4f}"),
    ("Rt", lambda r: f"{r['rate_transmit']:.4f}"),
    ("Rr", lambda r: f"{r['rate_receive']:.4f}"),
    ("MSE 1", lambda r: f"{r['mse1']:.4f}"),
    ("MSE 2", lambda r: f"{r['mse2']:.4f}"),
    ("PSNR 1", lambda r: f"{r['psnr1']:.2f}"),
    ("PSNR 2", lambda r: f"{r['psnr2']:.2f}"),
    ("train s", lambda r: f"{r['train_s']:.0f}"),
]


def curve(rows, rate_key):
    return [(r[rate_key], plots.quality_of(r)) for r in rows]


def safe_bd(anchor, test):
    try:
        return f"{bd_rate(anchor, test):+.1f}%"
    except ValueError as err:
        return f"n/a ({err})"


def summarize_architectures(rows):
    """The architectures over alpha x seed at beta = 1: payload rates (bytes minus the
    streams' fixed cost) against quality; BD-rate on Rt against joint per seed (5 alphas
    each), then its mean and range over the seeds."""
    print("### arch_digits_3seeds (beta = 1, payload bits/image)\n")
    print("| arch | alpha | R0 | R1 | R2 | Rt | acc digit | acc colour | seeds |\n|---|---|---|---|---|---|---|---|---|")
    groups = defaultdict(list)
    for r in rows:
        groups[(r["architecture"], r["alpha"])].append(r)
    means = []
    for (name, alpha), runs in sorted(groups.items()):
        def mean(key, runs=runs):
            return sum(r[key] for r in runs) / len(runs)
        means.append({"architecture": name, "dataset": "digits", "rate_transmit": mean("payload_rate_transmit"),
                      "rate_receive": 2 * mean("payload_r0") + mean("payload_r1") + mean("payload_r2"),
                      "acc1": mean("acc1"), "acc2": mean("acc2")})
        print(f"| {name} | {alpha:g} | {mean('payload_r0'):.2f} | {mean('payload_r1'):.2f} | {mean('payload_r2'):.2f} | "
              f"{mean('payload_rate_transmit'):.2f} | {mean('acc1'):.3f} | {mean('acc2'):.3f} | {len(runs)} |")
    print()
    plots.plot_rd(means, FIGURES / "digits_rd_architectures_3seeds.png")
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["architecture"]][r["seed"]].append((r["payload_rate_transmit"], plots.quality_of(r)))
    if "joint" not in by:
        return
    print("BD-rate on payload Rt against joint, one per seed over its 5 alphas (quality = acc digit + acc "
          "colour; each curve's Pareto front, then bjontegaard's piecewise-cubic `pchip` fit; a plain cubic "
          "fit through these points swings from -90 % to +300,000 % between seeds):\n")
    print("| codec | per seed (front points) | mean |\n|---|---|---|")
    for name in sorted(by):
        if name == "joint":
            continue
        values = {}
        for seed, points in sorted(by[name].items()):
            anchor, test = pareto_front(by["joint"].get(seed, [])), pareto_front(points)
            try:
                values[seed] = (pchip_bd_rate(anchor, test), len(test))
            except (ValueError, ZeroDivisionError):
                values[seed] = (None, len(test))
        shown = ", ".join(f"{seed}: {v:+.1f}% ({n})" if v is not None else f"{seed}: n/a ({n})" for seed, (v, n) in values.items())
        valid = [v for v, _ in values.values() if v is not None]
        mean_text = f"{sum(valid) / len(valid):+.1f}% ({len(valid)} seeds)" if valid else "n/a"
        print(f"| {name} | {shown} | {mean_text} |")
    print()


def pareto_front(points):
    """The (rate, quality) points that no cheaper point beats in quality, by rate."""
    front, best = [], float("-inf")
    for rate, quality in sorted(points):
        if rate > 0 and quality > best:
            front.append((rate, quality))
            best = quality
    return front


def pchip_bd_rate(anchor, test):
    import bjontegaard

    if len(anchor) < 2 or len(test) < 2:
        raise ValueError("a curve needs at least 2 points")
    return float(bjontegaard.bd_rate([r for r, _ in anchor], [q for _, q in anchor], [r for r, _ in test], [q for _, q in test],
                                     method="pchip", require_matching_points=False, min_overlap=0.0))


def main():
    FIGURES.mkdir(exist_ok=True)
    for block in ("beta_digits", "beta_digits_long", "independent_beta2", "dependent_beta1",
                  "known_good_mixture", "known_good_independent"):
        rows = load(block)
        if rows:
            print(f"### {block}\n")
            table(sorted(rows, key=lambda r: (r["beta"], r["seed"])), DIGIT_COLUMNS)
    beta_rows = load("beta_digits")
    if beta_rows:
        mi = beta_rows[0]["mutual_information_bits"]
        seed0 = [r for r in beta_rows if r["seed"] == 0]
        plots.plot_beta_rates(seed0, FIGURES / "digits_beta_rates.png", mi, title="coloured digits (mixture), seed 0")
        plots.plot_r0_vs_mi(beta_rows, FIGURES / "digits_r0_vs_mi.png", mi)

    arch = load("arch_digits")
    if arch:
        print("### arch_digits (beta = 1)\n")
        table(sorted(arch, key=lambda r: (r["architecture"], r["alpha"])), DIGIT_COLUMNS)
        receive = load("arch_digits_receive")
        if receive:
            print("### arch_digits_receive (shared, beta = 2)\n")
            table(sorted(receive, key=lambda r: r["alpha"]), DIGIT_COLUMNS)
        by = defaultdict(list)
        for r in arch:
            by[r["architecture"]].append(r)
        for r in receive:
            by["shared (beta=2)"].append({**r, "architecture": "shared (beta=2)"})
        plots.plot_rd([r for rows in by.values() for r in rows], FIGURES / "digits_rd_architectures.png")
        if "joint" in by:
            print("BD-rate vs joint (quality = acc digit + acc colour; cubic fit of log-rate):\n")
            print("| codec | BD-rate on Rt | BD-rate on Rr |\n|---|---|---|")
            for name, rows in sorted(by.items()):
                if name == "joint":
                    continue
                print(f"| {name} | {safe_bd(curve(by['joint'], 'rate_transmit'), curve(rows, 'rate_transmit'))} | "
                      f"{safe_bd(curve(by['joint'], 'rate_receive'), curve(rows, 'rate_receive'))} |")
            print()

    arch3 = load("arch_digits_3seeds")
    if arch3:
        summarize_architectures(arch3)

    syn = load("synthetic")
    if syn:
        from gwn_fast.theory import synthetic_curves

        print("### synthetic (rates in bits per position)\n")
        table(sorted(syn, key=lambda r: (r["alpha"], r["beta"])), REGRESSION_COLUMNS)
        theory = synthetic_curves((0.5, 1, 2, 5, 7, 20, 100), seed=0)
        print("Blahut-Arimoto (bits per position):\n")
        print("| slope | distortion | joint | independent | MI |\n|---|---|---|---|---|")
        for t in theory:
            print(f"| {t['slope']:g} | {t['distortion']:.4f} | {t['rate_joint']:.4f} | {t['rate_independent']:.4f} | {t['mutual_information']:.4f} |")
        print()
        plots.plot_rd(syn, FIGURES / "synthetic_rd.png", group="beta", theory=theory)

    stereo = load("stereo")
    if stereo:
        print("### stereo (rates in bits per pixel of the left view)\n")
        table(sorted(stereo, key=lambda r: (r["architecture"], r["beta"], r["alpha"])), REGRESSION_COLUMNS)
        groups = defaultdict(list)
        for r in stereo:
            groups[f"{r['architecture']} beta={r['beta']:g}"].append({**r, "architecture": f"{r['architecture']} beta={r['beta']:g}"})
        plots.plot_rd([r for rows in groups.values() for r in rows], FIGURES / "stereo_rd.png")
        # BD-rate needs 4 points; with 3 alphas report rates at matched alpha instead.


if __name__ == "__main__":
    main()
