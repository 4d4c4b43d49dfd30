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

Exits non-zero if a budget is missed or nothing was measured.

Run: ``.venv/bin/python bench/understanding.py [--rounds 5] [--startups 5]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "legacy"))

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


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the test messages")
    parser.add_argument("--startups", type=int, default=5, help="fresh interpreters per decoder")
    args = parser.parse_args()

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
