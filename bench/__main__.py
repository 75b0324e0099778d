"""``python -m bench [--quick] [--skip SECTION ...] [--dir DIR]``: run every benchmark."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .admission import admission_cost
from .codec import codec_per_record
from .coldstart import cold_start
from .growth import growth, list_and_replay, run_memory
from .harness import Report, Sizes, load_average, machine_info
from .instances import instance_overhead, worker_throughput
from .peer import peer
from .postgres import postgres
from .progress import progress_output
from .steps import step_overhead

Section = Callable[[Report, Path, Sizes], object]
SECTIONS: dict[str, Section] = {
    "steps": step_overhead,
    "progress": progress_output,
    "instances": instance_overhead,
    "workers": worker_throughput,
    "growth": growth,
    "list": list_and_replay,
    "coldstart": cold_start,
    "peer": peer,
    "memory": run_memory,
    "codec": codec_per_record,
    "postgres": postgres,
    "admission": admission_cost,
}
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument(
        "--skip", action="append", default=[], choices=sorted(SECTIONS), help="leave a section out"
    )
    parser.add_argument(
        "--dir", type=Path, help="where the stores go (default: a temporary folder)"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="folder for latest.json and latest.md"
    )
    arguments = parser.parse_args(argv)
    sizes = Sizes.tiny() if arguments.quick else Sizes.full()
    work = Path(tempfile.mkdtemp(prefix="wfcli-bench-", dir=arguments.dir))
    report = Report(quick=sizes.quick, machine=machine_info(work))
    started = time.perf_counter()
    failed = []
    try:
        for name, section in SECTIONS.items():
            if name in arguments.skip:
                continue
            # The last section's files (10,000-journal stores) are written back first, so
            # that their write-back does not land in this section's timings.
            os.sync()
            section_started = time.perf_counter()
            load_before = load_average()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            try:
                section(report, work / name, sizes)
            except Exception:  # keep the other sections' figures; the exit code tells
                traceback.print_exc()
                failed.append(name)
            shutil.rmtree(work / name, ignore_errors=True)
            report.section_info(
                f"_{name}",
                seconds=round(time.perf_counter() - section_started, 1),
                load_before=load_before,
                load_after=load_average(),
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.machine["failed_sections"] = failed
    report.machine["seconds"] = round(time.perf_counter() - started, 1)
    report.machine["load_at_end"] = load_average()
    arguments.output.mkdir(parents=True, exist_ok=True)
    (arguments.output / "latest.json").write_text(
        json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8"
    )
    table = report.markdown()
    (arguments.output / "latest.md").write_text(table, encoding="utf-8")
    sys.stdout.write(table)
    if failed:
        print(f"bench: failed sections: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
