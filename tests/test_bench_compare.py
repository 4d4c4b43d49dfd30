"""``bench/compare_revisions.py`` times each revision's own code, and leaves no checkout behind.

Each side's server must import the package from its own checkout: ``bench/webhook_overhead.py``
puts its folder first on ``sys.path``, so a server started by one checkout's script and pointed
at another's package by ``PYTHONPATH`` would run the first checkout's code on both sides (the
mistake this tool was fixed for: two "revisions" that were one).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import require_or_skip

ROOT = Path(__file__).resolve().parent.parent


def _worktrees() -> list[str]:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in listed.stdout.splitlines() if line.startswith("worktree ")]


def test_a_server_script_imports_the_package_of_its_own_checkout(tmp_path: Path) -> None:
    """What the tool relies on: the package comes from the checkout whose script starts the server."""
    other = tmp_path / "checkout"
    for folder in ("bench", "ghl_real_estate_ai"):
        shutil.copytree(ROOT / folder, other / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for tree in (ROOT, other):
        script = tree / "bench" / "webhook_overhead.py"
        code = (
            f"import runpy; runpy.run_path({str(script)!r}, run_name='server'); "
            "import ghl_real_estate_ai; print(ghl_real_estate_ai.__file__)"
        )
        # From a folder of its own, as bench.webhook_overhead.serve() starts a server.
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
        )
        assert Path(done.stdout.strip()).resolve() == (tree / "ghl_real_estate_ai" / "__init__.py").resolve()


def test_each_side_is_served_by_its_own_checkouts_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import compare_revisions, webhook_overhead

    started: list[str] = []

    @contextmanager
    def serve(config: webhook_overhead.Config, *_: object) -> Iterator[SimpleNamespace]:
        started.append(config.script)
        yield SimpleNamespace(base_url="http://unused", folder=tmp_path)

    def wrk(*_: object, **__: object) -> webhook_overhead.Run:
        run = webhook_overhead.Run(seconds=1.0)
        run.count = 100
        return run

    monkeypatch.setattr(webhook_overhead, "serve", serve)
    monkeypatch.setattr(webhook_overhead, "wrk", wrk)
    args = SimpleNamespace(tracing="off", rounds=2, seconds=1, concurrency=1, database="sqlite")
    rounds = compare_revisions.compare(tmp_path / "base", tmp_path / "head", args, None)  # type: ignore[arg-type]
    assert rounds == [(100.0, 100.0), (100.0, 100.0)]
    base, head = (str(tmp_path / side / "bench" / "webhook_overhead.py") for side in ("base", "head"))
    assert started == [base, head, head, base]  # the order rotates round by round


def test_together_both_servers_stay_up_and_the_bursts_alternate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import compare_revisions, webhook_overhead

    events: list[str] = []
    rates = {"base": iter([100, 110, 120]), "head": iter([200, 220, 240])}

    @contextmanager
    def serve(config: webhook_overhead.Config, *_: object) -> Iterator[SimpleNamespace]:
        side = Path(config.script).parent.parent.name
        events.append(f"start {side}")
        yield SimpleNamespace(base_url=side, folder=tmp_path)
        events.append(f"stop {side}")

    def wrk(base_url: str, seconds: float, *_: object, warm_up: bool = False) -> webhook_overhead.Run:
        events.append(f"{'warm' if warm_up else 'run'} {base_url}")
        run = webhook_overhead.Run(seconds=float(seconds))
        run.count = 0 if warm_up else next(rates[base_url]) * int(seconds)
        return run

    monkeypatch.setattr(webhook_overhead, "serve", serve)
    monkeypatch.setattr(webhook_overhead, "wrk", wrk)
    args = SimpleNamespace(tracing="off", rounds=3, seconds=2, concurrency=1, database="sqlite")
    rounds = compare_revisions.compare_together(tmp_path / "base", tmp_path / "head", args, None)  # type: ignore[arg-type]
    assert rounds == [(100.0, 200.0), (110.0, 220.0), (120.0, 240.0)]
    assert events == [
        "start base", "start head", "warm base", "warm head",
        "run base", "run head", "run head", "run base", "run base", "run head",
        "stop head", "stop base",
    ]  # fmt: skip


@pytest.mark.parametrize("together", [(), ("--together",)], ids=["a-server-per-run", "together"])
def test_two_revisions_are_compared_round_by_round_and_their_checkouts_removed(
    together: tuple[str, ...],
) -> None:
    if shutil.which("wrk") is None:
        require_or_skip("wrk not installed (scripts/system-deps)")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        require_or_skip("not a git checkout")
    before = _worktrees()
    done = subprocess.run(
        [
            *(
                sys.executable,
                str(ROOT / "bench" / "compare_revisions.py"),
                "--base",
                "HEAD",
                "--head",
                "HEAD",
            ),
            *("--rounds", "2", "--seconds", "1", "--concurrency", "2"),
            *together,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rounds = [line for line in done.stdout.splitlines() if line.strip().startswith("round ")]
    assert len(rounds) == 2 and all("head / base" in line for line in rounds)
    assert "head / base, webhooks per second:" in done.stdout
    assert _worktrees() == before


def test_a_revision_that_does_not_exist_is_a_clear_error() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        require_or_skip("not a git checkout")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "compare_revisions.py"), "--base", "no-such-revision"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0
    assert "no-such-revision" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
