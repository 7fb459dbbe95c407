"""Benchmark session plumbing: which files run, the size set, and the closing tables.

- ``pytest --benchmark-only`` at the repository root runs ``benchmarks/bench_*.py`` (and
  no test: ``tests/conftest.py`` leaves ``tests/`` out of such a run); plain ``pytest``
  runs the tests and leaves these files out. Naming files or folders on the command line
  overrides both (``pytest benchmarks/bench_rans.py`` runs that file).
- Sizes: a fast set by default (the whole run takes a few minutes on 2 CPU cores);
  ``GWN_BENCH_FULL=1`` selects the full set.
- Each module adds its side-by-side table to the session's :class:`BenchReport`; the
  tables are printed at the very end of the run (after pytest-benchmark's own table) and,
  with ``GWN_BENCH_REPORT=path``, also written there as markdown.

There is deliberately no ``conftest.py`` at the repository root: it would put the source
tree, which has no compiled ``_rans``, on ``sys.path`` ahead of the installed package.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import pytest

_HERE = Path(__file__).parent
_REPORT = pytest.StashKey["BenchReport"]()


def full_sizes() -> bool:
    """True when the full size set was asked for (``GWN_BENCH_FULL=1``)."""
    return os.environ.get("GWN_BENCH_FULL") == "1"


def from_testpaths(config) -> bool:
    """True when pytest was given no paths, so it collects ``testpaths``."""
    return config.args_source == pytest.Config.ArgsSource.TESTPATHS


def pytest_ignore_collect(collection_path, config):
    # Plain `pytest` collects testpaths = ["tests", "benchmarks"]; without
    # --benchmark-only the benchmark files stay out (not even imported). Returning None
    # (not False) leaves every other decision to pytest.
    if (
        from_testpaths(config)
        and not config.getoption("benchmark_only", False)
        and collection_path.name.startswith("bench_")
        and collection_path.parent == _HERE
    ):
        return True
    return None


class BenchReport:
    """Tables collected during the run, rendered as aligned markdown at its end."""

    def __init__(self) -> None:
        self.sections: list[tuple] = []

    def add(self, title: str, columns: list[str], rows: list[list[str]], align: str = "", notes: list[str] = ()) -> None:
        """One table. ``align``: a character per column, ``l`` or ``r`` (default: the first
        column left, the others right)."""
        align = align or "l" + "r" * (len(columns) - 1)
        self.sections.append((title, list(columns), [[str(c) for c in r] for r in rows], align, list(notes)))

    @staticmethod
    def _table(columns, rows, align):
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]

        def line(cells):
            return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)) + " |"

        sep = "|" + "|".join("-" * (w + 1) + ("-" if a == "l" else ":") for w, a in zip(widths, align)) + "|"
        return [line(columns), sep, *(line(r) for r in rows)]

    def render(self) -> str:
        out = [f"## Benchmarks ({'full' if full_sizes() else 'fast'} size set; GWN_BENCH_FULL=1 for the full set)", ""]
        out.append(environment_line())
        for title, columns, rows, align, notes in self.sections:
            out += ["", f"### {title}", "", *self._table(columns, rows, align)]
            if notes:
                out += ["", *(f"- {n}" for n in notes)]
        return "\n".join(out) + "\n"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=_HERE, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout, or no git: say so
        return "unknown"


def environment_line() -> str:
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    else:
        device = f"CPU only ({platform.processor() or platform.machine()}, {os.cpu_count()} cores; no CUDA device)"
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f"{when}, commit {_commit()}, {device}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, triton {triton_version}"
    )


def pytest_configure(config):
    config.stash[_REPORT] = BenchReport()


@pytest.fixture(scope="session")
def bench_report(request) -> BenchReport:
    """The session's tables; each bench module adds one when its last benchmark ran."""
    return request.config.stash[_REPORT]


@pytest.fixture(scope="module", autouse=True)
def _module_table(request, bench_report):
    """After a bench module's last benchmark, its ``table()`` (title, headers, rows, align,
    notes) joins the session's tables, if it has rows."""
    yield
    table = getattr(request.module, "table", None)
    if table is not None:
        section = table()
        if section[2]:
            bench_report.add(*section)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    report = config.stash.get(_REPORT, None)
    if report is None or not report.sections:
        return
    text = report.render()
    terminalreporter.write_sep("=", "gwn_fast benchmark tables")
    terminalreporter.write(text)
    path = os.environ.get("GWN_BENCH_REPORT")
    if path:
        Path(path).write_text(text)
        terminalreporter.write_line(f"(tables written to {path})")
