"""Webhooks per second of two revisions of the service, side by side (issue 14: time each change).

Python opcode counts repeat exactly but are not time (docs/benchmarks.md tells how a change
that cut 4,000 opcodes a webhook saved none), so a change meant to make the service faster is
timed against the revision before it: the real app under uvicorn, started exactly as
``bench/webhook_overhead.py`` starts it, once from a checkout of ``--base`` and once from this
working tree (or a checkout of ``--head``), driven by wrk in interleaved rounds (the order
rotated), reporting the median of the per-round ratios head / base with their min-max.

Run: ``.venv/bin/python bench/compare_revisions.py --base HEAD~1`` (``--tracing local`` for the
default local store, ``--database postgresql`` for PostgreSQL + Redis; ``--help`` for the rest).
A revision is checked out with ``git worktree add --detach`` in a temporary folder, removed at
the end, and its server is started by that checkout's own ``bench/webhook_overhead.py
--serve-app``, which puts the checkout first on ``sys.path``: each side runs its own code, on
this virtualenv's dependencies (a base older than that server mode cannot be compared).

On a host whose speed drifts (a shared VM: the same code measured 0.79-1.27x itself round by
round), ``--together`` keeps both servers running for the whole comparison and drives them
in alternating bursts of ``--seconds``, so the two halves of a round are seconds apart
instead of a server start-up and a warm-up apart. Both servers' databases grow through the
run alike; the idle one uses no CPU. A host whose speed jitters within seconds stays too
noisy for a change of a few percent either way (docs/benchmarks.md): time such a change
with a micro-benchmark on real values.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import webhook_overhead as bench  # noqa: E402

_TRACING = {"off": None, "local": "local", "otlp": "otlp"}


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        bench.fail(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def _sides(base_tree: Path, head_tree: Path, args: argparse.Namespace) -> dict[str, bench.Config]:
    exporter = _TRACING[args.tracing]
    return {
        name: bench.Config(name, exporter, script=str(tree / "bench" / "webhook_overhead.py"))
        for name, tree in (("base", base_tree), ("head", head_tree))
    }


def _order(number: int) -> tuple[str, str]:
    return ("base", "head") if number % 2 == 0 else ("head", "base")


def _report(rounds: list[tuple[float, float]], number: int, total: int) -> None:
    base, head = rounds[-1]
    print(
        f"  round {number + 1}/{total}: base {base:.1f}/s, head {head:.1f}/s, head / base {head / base:.3f}",
        flush=True,
    )


def compare(
    base_tree: Path, head_tree: Path, args: argparse.Namespace, receiver: bench.Receiver
) -> list[tuple[float, float]]:
    """``(base, head)`` webhooks per second of each round, each side's server started anew each round."""
    sides = _sides(base_tree, head_tree, args)
    rounds: list[tuple[float, float]] = []
    for number in range(args.rounds):
        rates: dict[str, float] = {}
        for name in _order(number):
            with bench.serve(sides[name], args.database, receiver, 0.0) as server:
                bench.wrk(server.base_url, 2, args.concurrency, server.folder, warm_up=True)
                run = bench.wrk(server.base_url, args.seconds, args.concurrency, server.folder)
                rates[name] = run.count / run.seconds
        rounds.append((rates["base"], rates["head"]))
        _report(rounds, number, args.rounds)
    return rounds


def compare_together(
    base_tree: Path, head_tree: Path, args: argparse.Namespace, receiver: bench.Receiver
) -> list[tuple[float, float]]:
    """``(base, head)`` webhooks per second of each round, both servers up throughout (``--together``)."""
    sides = _sides(base_tree, head_tree, args)
    rounds: list[tuple[float, float]] = []
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(bench.serve(sides[name], args.database, receiver, 0.0))
            for name in sides
        }
        for server in servers.values():
            bench.wrk(server.base_url, 2, args.concurrency, server.folder, warm_up=True)
        for number in range(args.rounds):
            rates: dict[str, float] = {}
            for name in _order(number):
                server = servers[name]
                run = bench.wrk(server.base_url, args.seconds, args.concurrency, server.folder)
                rates[name] = run.count / run.seconds
            rounds.append((rates["base"], rates["head"]))
            _report(rounds, number, args.rounds)
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the revision to compare with (default: HEAD)")
    parser.add_argument("--head", help="the revision compared (default: this working tree, as it is)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--seconds", type=int, default=8, help="seconds per run")
    parser.add_argument("--concurrency", type=int, default=16, help="webhooks in flight")
    parser.add_argument("--tracing", choices=sorted(_TRACING), default="off", help="tracing of both sides")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--together",
        action="store_true",
        help="keep both servers up and alternate short bursts (for a host whose speed drifts)",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds < 1 or args.concurrency < 1:
        parser.error("--rounds, --seconds and --concurrency must be at least 1")
    revisions = {"base": _git("rev-parse", "--verify", f"{args.base}^{{commit}}")}
    if args.head:
        revisions["head"] = _git("rev-parse", "--verify", f"{args.head}^{{commit}}")
        head_name = f"{args.head} ({revisions['head'][:7]})"
    else:
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        head_name = (
            f"this working tree ({_git('rev-parse', '--short', 'HEAD')}{' with changes' if dirty else ''})"
        )
    print(
        f"base {args.base} ({revisions['base'][:7]}) against {head_name}: tracing {args.tracing}, "
        f"{args.database}, {args.rounds} rounds of {args.seconds} s, {args.concurrency} in flight"
        + (", both servers up throughout" if args.together else ""),
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="jorge-compare-"))
    trees = {"head": ROOT}
    receiver = bench.Receiver()
    try:
        for name, revision in revisions.items():
            trees[name] = folder / name
            _git("worktree", "add", "--detach", str(trees[name]), revision)
        rounds = (compare_together if args.together else compare)(
            trees["base"], trees["head"], args, receiver
        )
    finally:
        receiver.close()
        for name in revisions:
            if (folder / name).exists():
                _git("worktree", "remove", "--force", str(folder / name))
        shutil.rmtree(folder, ignore_errors=True)
    ratios = [head_rate / base_rate for base_rate, head_rate in rounds]
    print(
        f"head / base, webhooks per second: {statistics.median(ratios):.3f} "
        f"({min(ratios):.3f}-{max(ratios):.3f}) over {len(ratios)} rounds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
