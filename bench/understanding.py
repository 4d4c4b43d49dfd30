"""Understanding one message, and loading the model, side by side with the old regex decoder.

Issue 10 budgets: the understanding pipeline may cost at most 2 ms per message
at the median, and start-up may take at most 1 s to load the classifier.

* Per message: every message of the corpus's held-apart test split (real
  texting: English, Spanish, shorthand, emoji) read as a one-message
  conversation by ``analyze_lead``, the pipeline's (``new``) and the frozen
  pre-issue-10 regex decoder's (``old``, ``bench/legacy/intent_decoder_0827c71.py``),
  interleaved message by message in rounds whose order alternates, so drift of
  the machine hits both alike. The classifier alone is timed too.
* Start-up: fresh interpreters (interleaved new/old) time importing the decoder
  and its first use: for ``new`` the classifier artefact (numpy import and
  JSON weights) on its own, then the gazetteer and dateparser warm-up; for
  ``old`` importing the module and reading the bundled comps' areas.

* CPU per message against a baseline commit (issue 14): the understanding
  package (and the decoder) of ``--baseline`` are taken out of git into a
  temporary directory under another package name, and both read the same
  messages, interleaved message by message in rounds whose order alternates,
  CPU time (``time.process_time``) summed per side: the bench's webhook texts
  (each signed with a name of its own, as ``bench/webhook_overhead.py`` sends
  them), the corpus test split, and every eval conversation through
  ``analyze_lead`` with cold caches (every turn read). Each text is made unique
  per round, so only the caches a real stream of distinct messages would hit
  can help. Both sides' readings must be equal, or the run fails.

Exits non-zero if a budget is missed, nothing was measured, or the baseline
read a message differently.

Run: ``.venv/bin/python bench/understanding.py [--rounds 5] [--startups 5] [--baseline SHA]``
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "legacy"))

BASELINE = "5554c93"
"""main before issue 14's understanding work."""
P50_BUDGET_MS = 2.0
LOAD_BUDGET_S = 1.0

_NEW_STARTUP = """
import json, time
t0 = time.perf_counter()
from ghl_real_estate_ai.understanding.classifier import load_classifier
load_classifier()
t1 = time.perf_counter()
from datetime import UTC, datetime
from ghl_real_estate_ai.bots.intent_decoder import analyze_lead
from ghl_real_estate_ai.understanding.places import gazetteer
gazetteer()
from ghl_real_estate_ai.understanding.dates import when
when("by june 15", datetime.now(UTC).date())
t2 = time.perf_counter()
print(json.dumps({"model": t1 - t0, "all": t2 - t0}))
"""
_OLD_STARTUP = """
import json, sys, time
sys.path.insert(0, "bench/legacy")
t0 = time.perf_counter()
import intent_decoder_0827c71 as legacy
legacy._bundled_areas()
t1 = time.perf_counter()
print(json.dumps({"model": t1 - t0, "all": t1 - t0}))
"""


@dataclass
class Msg:
    direction: str
    body: str
    created_at: datetime


def _startup(code: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _baseline(commit: str, into: Path) -> tuple[ModuleType, ModuleType]:
    """The baseline's ``understanding.reading`` and ``bots.intent_decoder``, imported as ``h3base``."""
    package = into / "h3base"
    (package / "understanding").mkdir(parents=True)
    (package / "bots").mkdir()
    (package / "__init__.py").write_text("")
    (package / "bots" / "__init__.py").write_text("")
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", commit, "ghl_real_estate_ai/understanding/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    files = [f for f in listing if f.endswith(".py")] + ["ghl_real_estate_ai/bots/intent_decoder.py"]
    for name in files:
        source = subprocess.run(
            ["git", "show", f"{commit}:{name}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        source = source.replace("ghl_real_estate_ai.understanding", "h3base.understanding")
        target = package / ("bots" if "/bots/" in name else "understanding") / Path(name).name
        target.write_text(source)
    (package / "understanding" / "model").symlink_to(ROOT / "ghl_real_estate_ai" / "understanding" / "model")
    sys.path.insert(0, str(into))
    return importlib.import_module("h3base.understanding.reading"), importlib.import_module(
        "h3base.bots.intent_decoder"
    )


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _webhook_texts() -> tuple[str, ...]:
    tree = ast.parse((ROOT / "bench" / "webhook_overhead.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "TEXTS" for t in node.targets):
            texts: tuple[str, ...] = ast.literal_eval(node.value)
            return texts
    raise SystemExit("bench/webhook_overhead.py has no TEXTS")


def _versus_baseline(commit: str, rounds: int) -> bool:
    """Print CPU per message here and at ``commit``; False if nothing was measured or a reading differs."""
    from ghl_real_estate_ai.bots import intent_decoder as new_decoder
    from ghl_real_estate_ai.understanding import reading as new_reading
    from ghl_real_estate_ai.understanding.dataset import load_split

    with tempfile.TemporaryDirectory() as tmp:
        old_reading, old_decoder = _baseline(commit, Path(tmp))
        new_reading.warm_up()
        old_reading.warm_up()
        areas = new_decoder._bundled_areas()
        today = date(2026, 3, 3)
        start = datetime(2026, 3, 3, 12, tzinfo=UTC)
        names = [f"{c}{v}{c2}{v2}" for c in "bdfgkl" for v in "aeiou" for c2 in "mnprst" for v2 in "aeio"]
        webhook = [
            f"{t} {names[n % len(names)].capitalize()} here." for n, t in enumerate(_webhook_texts() * 50)
        ]
        corpus = [e.text for e in load_split("test")]
        conversations = []
        for path in sorted((ROOT / "ghl_real_estate_ai" / "data" / "eval").glob("*.json")):
            conversations += [
                c["turns"] for c in json.loads(path.read_text(encoding="utf-8"))["conversations"]
            ]

        def read(module: ModuleType) -> Callable[[str], Any]:
            return lambda text: module.read_message(text, today=today, known_areas=areas)

        def analyze(module: ModuleType) -> Callable[[list[str]], Any]:
            def run(turns: list[str]) -> Any:
                module.read_message_cached.cache_clear()
                module_decoder = new_decoder if module is new_reading else old_decoder
                module_decoder._decode.cache_clear()
                return module_decoder.analyze_lead(
                    [Msg("inbound", t, start + timedelta(hours=i)) for i, t in enumerate(turns)]
                )

            return run

        workloads: list[tuple[str, list[Any], Callable[[ModuleType], Callable[[Any], Any]]]] = [
            ("webhook texts (read_message)", webhook, read),
            ("corpus test split (read_message)", corpus, read),
            ("eval conversations (analyze_lead, cold)", conversations, analyze),
        ]
        print(f"CPU per message against {commit}, {rounds} rounds interleaved (process_time):")
        print(f"  {'':<42}{'before us':>10}{'after us':>10}{'ratio':>8}")
        ok = True
        clock = time.process_time
        for label, items, make in workloads:
            spent = {"old": 0.0, "new": 0.0}
            calls = 0
            sides = {"new": make(new_reading), "old": make(old_reading)}
            for round_no in range(rounds):
                tag = f" r{round_no}" if round_no else ""
                for n, item in enumerate(items):
                    unique = f"{item}{tag}" if isinstance(item, str) else [f"{t}{tag}" for t in item]
                    order = ["new", "old"] if (round_no + n) % 2 else ["old", "new"]
                    results = {}
                    for side in order:
                        began = clock()
                        results[side] = sides[side](unique)
                        spent[side] += clock() - began
                    if round_no == 0 and _plain(results["new"]) != _plain(results["old"]):
                        print(f"error: {label}: the readings differ for {unique!r}", file=sys.stderr)
                        ok = False
                    calls += 1
            if not calls:
                return False
            messages = calls if isinstance(items[0], str) else sum(len(c) for c in items) * rounds
            print(
                f"  {label:<42}{spent['old'] / messages * 1e6:>10.0f}{spent['new'] / messages * 1e6:>10.0f}"
                f"{spent['old'] / spent['new']:>7.2f}x"
            )
        return ok


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the test messages")
    parser.add_argument("--startups", type=int, default=5, help="fresh interpreters per decoder")
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare CPU per message with")
    parser.add_argument("--baseline-only", action="store_true", help="only the comparison with --baseline")
    args = parser.parse_args()

    if not _versus_baseline(args.baseline, args.rounds):
        print("error: the baseline comparison failed", file=sys.stderr)
        return 1
    if args.baseline_only:
        return 0

    import intent_decoder_0827c71 as legacy

    from ghl_real_estate_ai.bots.intent_decoder import analyze_lead
    from ghl_real_estate_ai.understanding.classifier import load_classifier
    from ghl_real_estate_ai.understanding.dataset import load_split

    messages = [e.text for e in load_split("test")]
    now = datetime.now(UTC)
    conversations = [[Msg("inbound", text, now)] for text in messages]
    classifier = load_classifier()
    for conversation in conversations[:20]:  # warm both (caches, dateparser's first languages)
        analyze_lead(conversation)
        legacy.analyze_lead(conversation)

    new_ms: list[float] = []
    old_ms: list[float] = []
    clf_ms: list[float] = []
    clock = time.perf_counter
    for round_no in range(args.rounds):
        for conversation in conversations:
            # The per-message caches (normalise) would make later rounds cheaper: vary the text.
            body = conversation[0].body + ("" if round_no == 0 else f" {round_no}")
            convo = [Msg("inbound", body, now)]
            pair = [("new", analyze_lead), ("old", legacy.analyze_lead)]
            if round_no % 2:
                pair.reverse()
            for name, decode in pair:
                start = clock()
                decode(convo)
                elapsed = (clock() - start) * 1_000
                (new_ms if name == "new" else old_ms).append(elapsed)
            start = clock()
            classifier.scores(body)
            clf_ms.append((clock() - start) * 1_000)

    startups: dict[str, list[dict[str, float]]] = {"new": [], "old": []}
    for i in range(args.startups):
        order = [("new", _NEW_STARTUP), ("old", _OLD_STARTUP)]
        if i % 2:
            order.reverse()
        for name, code in order:
            startups[name].append(_startup(code))

    if not new_ms or not old_ms or not startups["new"]:
        print("error: nothing was measured", file=sys.stderr)
        return 1
    new_p50, old_p50 = statistics.median(new_ms), statistics.median(old_ms)
    print(f"per message, {len(messages)} test-split messages x {args.rounds} rounds, interleaved:")
    print(f"  {'':<28}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    print(
        f"  {'new pipeline (analyze_lead)':<28}{new_p50:>9.3f}{_pct(new_ms, 0.95):>9.3f}{max(new_ms):>9.2f}"
    )
    print(f"  {'old regex decoder':<28}{old_p50:>9.3f}{_pct(old_ms, 0.95):>9.3f}{max(old_ms):>9.2f}")
    print(f"  {'  classifier alone':<28}{statistics.median(clf_ms):>9.3f}{_pct(clf_ms, 0.95):>9.3f}")
    print(f"  new/old p50 ratio: {new_p50 / old_p50:.2f}x   budget: new p50 <= {P50_BUDGET_MS} ms")
    model_s = statistics.median(s["model"] for s in startups["new"])
    all_s = statistics.median(s["all"] for s in startups["new"])
    old_s = statistics.median(s["model"] for s in startups["old"])
    print(f"start-up, median of {args.startups} fresh interpreters each, interleaved:")
    print(f"  new: classifier load {model_s:.3f} s; with gazetteer and dateparser warm-up {all_s:.3f} s")
    print(f"  old: import and bundled areas {old_s:.3f} s   budget: classifier load <= {LOAD_BUDGET_S} s")
    failed = False
    if new_p50 > P50_BUDGET_MS:
        print(f"error: p50 {new_p50:.3f} ms is over {P50_BUDGET_MS} ms", file=sys.stderr)
        failed = True
    if model_s > LOAD_BUDGET_S:
        print(f"error: model load {model_s:.3f} s is over {LOAD_BUDGET_S} s", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
