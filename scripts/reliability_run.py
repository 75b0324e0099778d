"""The long reliability run: crash anywhere, bad inputs, damaged journals; prints the figures.

    python scripts/reliability_run.py --kills 1000 [--seed N] [--lanes N] [--root DIR]
                                      [--json FILE] [--markdown]

It drives the installed ``wf`` (next to this Python) with the harness of
``tests/reliability`` (the CI runs a small sample of the same):

1. crash anywhere: SIGKILL ``wf`` processes at seeded random moments until
   ``--kills`` kills are made, resume every instance to completion and check
   every invariant (``tests/reliability/chaos.py``);
2. the bad input matrix (``tests/reliability/bad_inputs.py``);
3. a flipped bit at every byte of a journal's middle lines, and a cut at every
   byte of its last line (``tests/reliability/damage.py``).

Exit status 0 when every figure that must be 0 is 0, else 1. ``--markdown``
prints the table published in ``docs/reliability.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.reliability.bad_inputs import make_template, try_all  # noqa: E402
from tests.reliability.chaos import ChaosRun  # noqa: E402
from tests.reliability.damage import flip_sweep, torn_sweep  # noqa: E402

DEFAULT_SEED = 20261123


def machine() -> str:
    """CPU model, cores, OS and Python, in one line."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(options: argparse.Namespace, root: Path) -> dict[str, Any]:
    started = time.monotonic()
    say(f"crash anywhere: {options.kills} kills over {options.lanes} lanes, seed {options.seed}")
    chaos = ChaosRun(
        root / "chaos",
        seed=options.seed,
        kills=options.kills,
        lanes=options.lanes,
        blob_size=options.blob_mib * 1024 * 1024,
        keep_passing_rounds=False,
        progress=say,
    ).run()
    chaos_seconds = time.monotonic() - started

    say("bad input matrix")
    template = make_template(root / "bad-input" / "project")
    tried = try_all(template, root / "bad-input")
    bad_failures = [t.failure for t in tried if t.failure]

    say("damaged journals: a flipped bit at every byte, a cut at every byte of the last line")
    rng = random.Random(options.seed)
    journal = (template.store / "journals" / "done.jsonl").read_bytes()
    middle = range(journal.find(b"\n") + 1, journal.rstrip(b"\n").rfind(b"\n") + 1)
    flips = flip_sweep(template, "done", middle, rng)
    torn = torn_sweep(template, "done")

    figures = chaos.to_json()
    document = {
        "seed": options.seed,
        "kills_requested": options.kills,
        "lanes": options.lanes,
        "machine": machine(),
        "revision": revision(),
        "crash_anywhere_seconds": round(chaos_seconds),
        "total_seconds": round(time.monotonic() - started),
        "crash_anywhere": figures,
        "bad_inputs": {
            "tried": len(tried),
            "failures": bad_failures,
            "store_changes": sum(not t.store_unchanged for t in tried),
        },
        "flipped_bytes": vars(flips),
        "torn_offsets": vars(torn),
    }
    document["must_be_zero"] = {
        "steps re-executed beyond the one in flight": figures["reruns_beyond_in_flight"],
        "journal records lost": figures["records_lost"],
        "journal records duplicated": figures["records_duplicated"],
        "journals unreadable after a kill": figures["unreadable_journals"],
        "instances with a wrong output": figures["wrong_outputs"],
        "wf exits with a traceback or an unexpected code": figures["unexpected_exits"],
        "other invariant violations": len(figures["violations"]),
        "bad inputs not refused with one line and exit 2": len(bad_failures),
        "store changes after bad input": document["bad_inputs"]["store_changes"],
        "flipped bytes that crashed, wrote, or were misreported": len(flips.failures),
        "torn offsets not read as an unwritten record": len(torn.failures),
    }
    return document


def markdown(document: dict[str, Any]) -> str:
    chaos = document["crash_anywhere"]
    rows = [
        ("kills injected (SIGKILL)", chaos["kills"]),
        ("... of a process executing an instance", chaos["kills_while_executing"]),
        ("... that left a torn last line", chaos["torn_tails_after_kills"]),
        ("instances completed / created", f"{chaos['instances_completed']} / {chaos['instances']}"),
        ("wf processes started", chaos["processes"]),
        ("steps re-executed because they were in flight at a kill", chaos["in_flight_reruns"]),
        *document["must_be_zero"].items(),
        ("bad inputs tried", document["bad_inputs"]["tried"]),
        (
            "flipped bytes tried / reported with file and line / still valid",
            "{tried} / {reported} / {read_as_valid}".format(**document["flipped_bytes"]),
        ),
        ("torn last-line offsets tried", document["torn_offsets"]["tried"]),
    ]
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    phases = ", ".join(f"{k} {v}" for k, v in chaos["kills_by_phase"].items())
    commands = ", ".join(f"`wf {k}` {v}" for k, v in chaos["kills_by_command"].items())
    lines += ["", f"Kills by moment: {phases}.", f"Kills by command killed: {commands}."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=1000, help="SIGKILLs to make (default 1000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--lanes", type=int, default=4, help="driver threads (default 4)")
    parser.add_argument("--blob-mib", type=int, default=8, help="size of the big step result")
    parser.add_argument("--root", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--markdown", action="store_true", help="print the docs table")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wf-reliability-") as scratch:
        root = options.root or Path(scratch)
        document = run(options, root)
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if options.json:
        options.json.write_text(text + "\n", encoding="utf-8")
    print(markdown(document) if options.markdown else text)
    failed = {name: value for name, value in document["must_be_zero"].items() if value}
    for name, value in failed.items():
        say(f"FAILED: {name}: {value}")
    say(f"done in {document['total_seconds']} s: {'FAILED' if failed else 'all invariants held'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
