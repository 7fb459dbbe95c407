"""Markdown tables of experiments/digits_beta.py results, with the science issue's checks.

    python experiments/digits_tables.py experiments/results/digits_beta.jsonl [--tag TAG]

Rates are payloads (real bytes minus each stream's fixed cost) in bits per test image; the
fixed cost of the three streams is listed apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def _mean(rows, key):
    return statistics.fmean(r[key] for r in rows)


def table(rows: list[dict]) -> str:
    head = "| setting | beta | seed | R0 | R1 | R2 | Rt | Rr | R0 est | fixed | acc digit | acc colour |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    lines = [head]
    groups = defaultdict(list)
    for r in rows:
        groups[(r["setting"], r["beta"])].append(r)
    for (setting, beta), group in sorted(groups.items()):
        for r in sorted(group, key=lambda r: r["seed"]):
            fixed = r["rate_transmit"] - r["payload_rate_transmit"]
            rr = 2 * r["payload_r0"] + r["payload_r1"] + r["payload_r2"]
            lines.append(
                f"| {setting} | {beta:g} | {r['seed']} | {r['payload_r0']:.2f} | {r['payload_r1']:.2f} | "
                f"{r['payload_r2']:.2f} | {r['payload_rate_transmit']:.2f} | {rr:.2f} | {r['est_r0']:.2f} | "
                f"{fixed:.2f} | {r['acc1']:.3f} | {r['acc2']:.3f} |"
            )
        if len(group) > 1:
            rr = statistics.fmean(2 * r["payload_r0"] + r["payload_r1"] + r["payload_r2"] for r in group)
            fixed = statistics.fmean(r["rate_transmit"] - r["payload_rate_transmit"] for r in group)
            lines.append(
                f"| **{setting}** | **{beta:g}** | mean of {len(group)} | **{_mean(group, 'payload_r0'):.2f}** | "
                f"{_mean(group, 'payload_r1'):.2f} | {_mean(group, 'payload_r2'):.2f} | "
                f"**{_mean(group, 'payload_rate_transmit'):.2f}** | {rr:.2f} | {_mean(group, 'est_r0'):.2f} | "
                f"{fixed:.2f} | {_mean(group, 'acc1'):.3f} | {_mean(group, 'acc2'):.3f} |"
            )
    return "\n".join(lines)


def checks(rows: list[dict]) -> list[str]:
    """The issue's acceptance checks that these rows can decide, each 'PASS'/'FAIL: why'."""
    by = defaultdict(list)
    for r in rows:
        by[(r["setting"], r["beta"])].append(r)
    out = []
    mix = {b: by.get(("mixture", b), []) for b in (1.0, 1.5, 2.0)}
    if mix[2.0]:
        mi = mix[2.0][0]["mutual_information_bits"]
        bad = [r["seed"] for r in mix[2.0] if not r["payload_r0"] < mi]
        out.append(f"mixture beta=2: R0 < I={mi:.2f} in every seed: " + ("PASS" if not bad else f"FAIL (seeds {bad})"))
    if mix[1.0]:
        mi = mix[1.0][0]["mutual_information_bits"]
        bad = [r["seed"] for r in mix[1.0] if not r["payload_r0"] > mi]
        out.append("mixture beta=1: R0 > I in every seed: " + ("PASS" if not bad else f"FAIL (seeds {bad})"))
    if all(mix.values()):
        m = {b: _mean(mix[b], "payload_r0") for b in mix}
        ok = m[2.0] <= m[1.5] <= m[1.0]
        out.append(f"mixture: mean R0 at beta=1.5 between beta=1 and 2 ({m[1.0]:.2f} >= {m[1.5]:.2f} >= {m[2.0]:.2f}): "
                   + ("PASS" if ok else "FAIL"))
    if mix[1.0] and mix[2.0]:
        t1, t2 = _mean(mix[1.0], "payload_rate_transmit"), _mean(mix[2.0], "payload_rate_transmit")
        out.append(f"mixture: mean Rt(beta=1) {t1:.2f} <= Rt(beta=2) {t2:.2f}: " + ("PASS" if t1 <= t2 else "FAIL"))
    acc = [r for b in mix for r in mix[b]]
    if acc:
        bad = [(r["beta"], r["seed"], r["acc1"], r["acc2"]) for r in acc if r["acc1"] < 0.93 or r["acc2"] < 0.99]
        out.append("mixture: accuracy >= 0.93 digit and >= 0.99 colour in every run: "
                   + ("PASS" if not bad else f"FAIL {bad}"))
    ind = by.get(("independent", 2.0), [])
    if ind:
        bad = [r["seed"] for r in ind if r["payload_r0"] > 0.1]
        out.append("independent beta=2: R0 payload <= 0.1 in every seed: " + ("PASS" if not bad else f"FAIL (seeds {bad})"))
    dep = by.get(("dependent", 1.0), [])
    if dep:
        bad = [r["seed"] for r in dep if not (r["payload_r0"] >= 2.5 and r["payload_r1"] + r["payload_r2"] < r["payload_r0"])]
        out.append("dependent beta=1: R0 >= 2.5 and R1 + R2 < R0 in every seed: " + ("PASS" if not bad else f"FAIL (seeds {bad})"))
    est = [(r, k) for r in rows for k in ("r0", "r1", "r2")]
    far = [
        (r["setting"], r["beta"], r["seed"], k, r[f"payload_{k}"], r[f"est_{k}"])
        for r, k in est
        if abs(r[f"payload_{k}"] - r[f"est_{k}"]) > max(0.01 * abs(r[f"est_{k}"]), 0.05)
    ]
    out.append(f"payload within max(1%, 0.05 bits/image) of the estimate: {len(est) - len(far)} of {len(est)} channel-runs"
               + ("" if not far else f"; outside: {far}"))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("results", nargs="+")
    p.add_argument("--tag", default=None)
    args = p.parse_args()
    rows = [json.loads(line) for f in args.results for line in Path(f).read_text().splitlines() if line.strip()]
    if args.tag is not None:
        rows = [r for r in rows if r.get("tag") == args.tag]
    print(table(rows))
    print()
    for line in checks(rows):
        print(f"- {line}")


if __name__ == "__main__":
    main()
