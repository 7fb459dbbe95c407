"""A seeded mutation fuzzer for containers and ``GrayWynerCodec.decompress`` (issue 13).

Seeds are real containers from small codecs of several configurations (per-sample and
single streams, receiver extracts, every context, the bottleneck prior, MLP heads; the
legacy version-2/3 layouts are refused by version, so they are not seeds). Each mutant is
a seed with one to three byte-level or structure-aware mutations. Half of the mutants
that still carry the current version get their CRC recomputed (what an attacker can do:
the mutation then reaches the field checks and the rANS decoder); the other half keep the
stored CRC (accidental damage).

The oracle, per mutant, is ``unpack`` then ``decompress``:

- it raises :class:`gwn_fast.BitstreamError` (the subclass itself), or
- it decodes, and the output has exactly the shape the (possibly mutated) header
  declares; if the mutant is accidental damage (CRC not recomputed), or its header and
  streams are the seed's, the decoded latents are also bit-identical to the seed's (the
  latents, not the task outputs: the synthesis after them is float arithmetic whose last
  bits can differ between two calls on several threads).

Anything else (another exception, a wrong-sized output, a silently different output) is
a failure; a crash kills the process. Run it on its own for a long campaign::

    OMP_NUM_THREADS=1 python tests/fuzz_container.py --seconds 3600 --seed 1
"""

from __future__ import annotations

import random
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

import torch

from gwn_fast import BitstreamError, GrayWynerCodec, container

INTERESTING = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 13, 16, 18, 255)
INTERESTING_VARINTS = (0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 64, 127, 128, 1000, 6000, 60000, 2**31, 2**32 + 1, 2**62)


@dataclass
class Seed:
    name: str
    codec: GrayWynerCodec
    blob: bytes
    receivers: tuple
    version: int
    ref: dict = field(default_factory=dict)
    enc: dict = field(default_factory=dict)


@dataclass
class Stats:
    mutants: int = 0
    rejected: int = 0
    decoded: int = 0
    crafted_accepted: int = 0
    failures: list = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    max_seconds: float = 0.0
    slowest: str = ""
    elapsed: float = 0.0
    reasons: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        return (
            f"{self.mutants:,} mutants in {self.elapsed:.1f} s: {self.rejected:,} BitstreamError, "
            f"{self.decoded:,} decoded ({self.crafted_accepted:,} crafted files accepted with the declared shape), "
            f"{len(self.failures)} failures; slowest mutant {self.max_seconds * 1e3:.1f} ms ({self.slowest})"
        )


def make_seeds() -> list[Seed]:
    """Real containers from small codecs (deterministic)."""
    seeds = []

    def codec_of(seed, **kw):
        torch.manual_seed(seed)
        out = kw.pop("out_channels", (3, 3))
        args = dict(latent_channels=8, transform="light", depth=2, hidden_channels=8)
        args.update(kw)
        c = GrayWynerCodec(3, out, **args).eval()
        c.update()
        return c

    def add(name, codec, x, receivers=(1, 2), single=False, extract=None):
        enc = codec.compress(x, single_stream=single)
        blob = container.pack(enc)
        if extract:
            blob = container.extract(blob, extract)
        enc = container.unpack(blob)
        # The decoded latents are the oracle: they are exact; the synthesis after them is
        # float arithmetic whose last bits may differ between calls on several threads.
        ref = codec.decompress(enc["strings"], enc["shape"], receivers=receivers)["latents"]
        seeds.append(Seed(f"{name}/v{container.VERSION}", codec, blob, receivers, container.VERSION, ref, enc))

    g = torch.Generator().manual_seed(7)
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    shared = codec_of(0)
    add("shared-checkerboard", shared, rand(2, 3, 13, 18))
    add("shared-single-stream", shared, rand(3, 3, 9, 7), single=True)
    add("shared-receiver1", shared, rand(2, 3, 12, 12), receivers=(1,), extract=1)
    add("shared-receiver2-single", shared, rand(2, 3, 5, 11), receivers=(2,), single=True, extract=2)
    add("separated-none-bottleneck", codec_of(1, architecture="separated", context="none", y0_prior="bottleneck"),
        rand(2, 3, 10, 9))
    add("combined-checkerboard-bottleneck", codec_of(2, architecture="combined", y0_prior="bottleneck"), rand(1, 3, 16, 16))
    add("independent-autoregressive", codec_of(3, architecture="independent", context="autoregressive"), rand(2, 3, 8, 6))
    add("joint", codec_of(4, architecture="joint"), rand(2, 3, 7, 13))
    mlp = codec_of(5, head="mlp", head_hidden=16, input_size=(16, 16), out_channels=(10, 4))
    add("mlp-heads", mlp, rand(2, 3, 16, 16))
    add("mlp-heads-single", mlp, rand(4, 3, 16, 16), single=True)
    return seeds


# ---------------------------------------------------------------------------------------
# mutations
# ---------------------------------------------------------------------------------------
def _header_fields(data: bytes):
    """(values, start, end) of the five header varints, or None if they do not parse."""
    pos, vals = 5, []
    try:
        for _ in range(5):
            v, pos = container._get_varint(data, pos)
            vals.append(v)
    except BitstreamError:
        return None
    return vals, 5, pos


def _mutate_once(rng: random.Random, data: bytearray, donors: list[bytes]) -> bytearray:
    if not data:
        return bytearray(rng.randbytes(rng.randint(1, 16)))
    op = rng.randrange(12)
    n = len(data)
    if op == 0:  # bit flips
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(n)
            data[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # random byte
        data[rng.randrange(n)] = rng.randrange(256)
    elif op == 2:  # interesting byte, biased to the header
        i = rng.randrange(min(n, 24)) if rng.random() < 0.6 else rng.randrange(n)
        data[i] = rng.choice(INTERESTING)
    elif op == 3:  # insert
        i = rng.randrange(n + 1)
        data[i:i] = rng.randbytes(rng.randint(1, 8))
    elif op == 4:  # delete a range
        i = rng.randrange(n)
        del data[i : i + rng.randint(1, 8)]
    elif op == 5:  # truncate
        del data[rng.randrange(n) :]
    elif op == 6:  # append
        data += rng.randbytes(rng.randint(1, 32))
    elif op == 7:  # splice from another seed
        donor = rng.choice(donors)
        i, j = rng.randrange(n), rng.randrange(len(donor))
        k = rng.randint(1, 32)
        data[i : i + k] = donor[j : j + k]
    elif op in (8, 9):  # rewrite a header field (structure-aware)
        parsed = _header_fields(bytes(data))
        if parsed is None:
            data[rng.randrange(n)] ^= 0xFF
        else:
            vals, start, end = parsed
            k = rng.randrange(5)
            vals[k] = rng.choice(INTERESTING_VARINTS) if op == 8 else max(0, vals[k] + rng.choice((-2, -1, 1, 2)))
            head = bytearray()
            for v in vals:
                container._put_varint(head, v)
            data[start:end] = head
    elif op == 10:  # flags byte
        parsed = _header_fields(bytes(data))
        if parsed is not None and parsed[2] < n:
            data[parsed[2]] ^= 1 << rng.randrange(8)
    else:  # version byte
        if n > 4:
            data[4] = rng.choice((2, 3, 4, 4, 5, 0, 0x84, rng.randrange(256)))
    return data


def mutate(rng: random.Random, blob: bytes, donors: list[bytes]) -> tuple[bytes, bool]:
    """``(mutant, crafted)``: crafted mutants of current-version data get a recomputed CRC."""
    data = bytearray(blob)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        data = _mutate_once(rng, data, donors)
    crafted = False
    if len(data) >= 9 and data[4] == container.VERSION and rng.random() < 0.5:
        data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "little")
        crafted = True
    return bytes(data), crafted


# ---------------------------------------------------------------------------------------
# the oracle
# ---------------------------------------------------------------------------------------
def _expected_shape(seed: Seed, receiver: int, shape: dict) -> tuple:
    H, W = shape["input"]
    n = shape["samples"]
    c = seed.codec.out_channels[receiver - 1]
    return (n, c) if seed.codec.config["head"] == "mlp" else (n, c, H, W)


def _reason(msg: str) -> str:
    """A BitstreamError message without its numbers: where in the checks a mutant died."""
    import re

    msg = re.sub(r"0x[0-9a-f]+|[0-9][0-9,]*", "#", msg.split(":")[0] if not msg.startswith("corrupt container") else msg)
    return msg[:70]


def check_one(seed: Seed, mutant: bytes, crafted: bool) -> str:
    """Outcome of one mutant: "rejected", "decoded", "crafted-accepted", or "FAIL: ..."."""
    try:
        enc = container.unpack(mutant)
        decoded = seed.codec.decompress(enc["strings"], enc["shape"], receivers=seed.receivers)
        out, latents = decoded["z_hat"], decoded["latents"]
    except BitstreamError as err:
        return "rejected: " + _reason(str(err))
    except Exception as err:  # noqa: BLE001  (the oracle: anything else is a finding)
        return f"FAIL: {type(err).__name__}: {err}"
    for r in seed.receivers:
        want = _expected_shape(seed, r, enc["shape"])
        if tuple(out[r].shape) != want:
            return f"FAIL: receiver {r} output {tuple(out[r].shape)} but the header declares {want}"
    same_content = enc["shape"] == seed.enc["shape"] and enc["strings"] == seed.enc["strings"]
    if same_content or not crafted:
        for name, ref in seed.ref.items():
            if not torch.equal(latents[name], ref):
                return f"FAIL: latent {name} decoded silently to different values"
        return "decoded"
    return "crafted-accepted"


def run_campaign(seconds: float, max_mutants: int | None = None, seed: int = 0, seeds: list[Seed] | None = None,
                 progress: bool = False) -> Stats:
    rng = random.Random(seed)
    seeds = seeds or make_seeds()
    donors = [s.blob for s in seeds]
    stats = Stats()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    next_report = t_start + 60
    while True:
        now = time.perf_counter()
        if now - t_start >= seconds or (max_mutants is not None and stats.mutants >= max_mutants):
            break
        s = seeds[stats.mutants % len(seeds)]
        mutant, crafted = mutate(rng, s.blob, donors)
        t0 = time.perf_counter()
        outcome = check_one(s, mutant, crafted)
        dt = time.perf_counter() - t0
        if dt > stats.max_seconds:
            stats.max_seconds, stats.slowest = dt, f"{s.name}: {outcome[:80]}"
        stats.mutants += 1
        if outcome.startswith("rejected"):
            stats.reasons[outcome[len("rejected: "):]] += 1
            outcome = "rejected"
        stats.outcomes[outcome if not outcome.startswith("FAIL") else "FAIL"] += 1
        if outcome == "rejected":
            stats.rejected += 1
        elif outcome.startswith("FAIL"):
            stats.failures.append((s.name, crafted, mutant.hex(), outcome))
        else:
            stats.decoded += 1
            stats.crafted_accepted += outcome == "crafted-accepted"
        if progress and now >= next_report:
            next_report = now + 60
            print(f"[{now - t_start:7.0f} s] {stats.mutants:,} mutants, {len(stats.failures)} failures", flush=True)
    stats.elapsed = time.perf_counter() - t_start
    return stats


if __name__ == "__main__":
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--mutants", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the statistics and failures here")
    a = p.parse_args()
    st = run_campaign(a.seconds, a.mutants, a.seed, progress=True)
    print(st.summary())
    print(dict(st.outcomes))
    for reason, count in st.reasons.most_common(25):
        print(f"{count:9,d}  {reason}")
    for f in st.failures[:20]:
        print(f)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"mutants": st.mutants, "elapsed_s": st.elapsed, "outcomes": dict(st.outcomes),
                       "max_mutant_s": st.max_seconds, "slowest": st.slowest, "reasons": dict(st.reasons),
                       "failures": st.failures}, fh, indent=1)
    raise SystemExit(1 if st.failures else 0)
