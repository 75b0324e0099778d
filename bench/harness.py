"""What every benchmark section uses: samples, the report, child processes, the machine.

A :class:`Sample` is several runs of one measurement; the :class:`Report`
collects samples, ratios against targets and notes, section by section, and
renders them as JSON (``bench/results/latest.json``) and as a markdown table.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BENCH_WORKFLOWS",
    "Entry",
    "ProcessRun",
    "Report",
    "Sample",
    "Sizes",
    "child_env",
    "load_average",
    "machine_info",
    "run_process",
    "time_process",
    "wf_command",
    "write_project",
]

BENCH_WORKFLOWS = Path(__file__).resolve().parent / "workloads.py"


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big and how often: the full run, or ``--quick`` to check that nothing rots."""

    quick: bool
    runs: int  # repeats of an in-process measurement
    process_runs: int  # repeats of a whole-process measurement
    cold_runs: int  # repeats of a cold-start measurement
    warmups: int  # untimed runs of a process first (they write the bytecode caches)
    worker_rounds: int
    step_count_durable: int
    step_count_relaxed: int
    instances: int  # timed instances per in-process per-instance measurement
    worker_instances: int
    pg_worker_instances: int  # per round of the PostgreSQL workers' scaling
    growth_steps: tuple[int, ...]
    list_sizes: tuple[int, ...]
    replay_instances: int
    memory_steps: int
    peer_large_steps: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            quick=False,
            runs=7,
            process_runs=9,
            cold_runs=15,
            warmups=2,
            worker_rounds=3,
            step_count_durable=300,
            step_count_relaxed=2000,
            instances=60,
            worker_instances=1000,
            pg_worker_instances=1000,
            growth_steps=(100, 1_000, 10_000),
            list_sizes=(1_000, 10_000),
            replay_instances=1_000,
            memory_steps=10_000,
            peer_large_steps=100,
        )

    @classmethod
    def tiny(cls) -> Sizes:
        return cls(
            quick=True,
            runs=2,
            process_runs=1,
            cold_runs=1,
            warmups=0,
            worker_rounds=1,
            step_count_durable=5,
            step_count_relaxed=20,
            instances=3,
            worker_instances=4,
            pg_worker_instances=8,
            growth_steps=(10, 20, 40),
            list_sizes=(10, 20),
            replay_instances=5,
            memory_steps=20,
            peer_large_steps=10,
        )


@dataclass(frozen=True, slots=True)
class Sample:
    """Several runs of one measurement, in ``unit``."""

    unit: str
    values: tuple[float, ...]

    @classmethod
    def of(cls, unit: str, values: Iterable[float]) -> Sample:
        collected = tuple(values)
        if not collected:
            raise ValueError("a sample needs at least one value")
        return cls(unit, collected)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def scaled(self, factor: float, unit: str) -> Sample:
        return Sample(unit, tuple(value * factor for value in self.values))

    def to_json(self) -> dict[str, object]:
        return {
            "unit": self.unit,
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "runs": len(self.values),
        }


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the report: a sample, or a single value such as a ratio."""

    section: str
    name: str
    sample: Sample | None = None
    value: float | None = None
    unit: str = ""
    target: float | None = None  # the value must be at most this (at least, with at_least)
    note: str = ""
    at_least: bool = False

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        measured = self.value if self.sample is None else self.sample.median
        assert measured is not None
        return measured >= self.target if self.at_least else measured <= self.target

    def to_json(self) -> dict[str, object]:
        document: dict[str, object] = (
            self.sample.to_json() if self.sample is not None else {"unit": self.unit}
        )
        if self.value is not None:
            document["value"] = self.value
        if self.target is not None:
            document["target"] = self.target
            document["target_is"] = "minimum" if self.at_least else "maximum"
            document["met"] = self.met
        if self.note:
            document["note"] = self.note
        return document


def _figure(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class Report:
    """Everything one ``python -m bench`` run measured."""

    quick: bool
    machine: dict[str, object] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    sections: dict[str, dict[str, object]] = field(default_factory=dict)

    def add(
        self,
        section: str,
        name: str,
        sample: Sample,
        *,
        target: float | None = None,
        note: str = "",
    ) -> Sample:
        self.entries.append(Entry(section, name, sample=sample, target=target, note=note))
        return sample

    def ratio(
        self,
        section: str,
        name: str,
        value: float,
        *,
        target: float | None = None,
        note: str = "",
        at_least: bool = False,
    ) -> float:
        self.entries.append(
            Entry(section, name, value=value, unit="x", target=target, note=note, at_least=at_least)
        )
        return value

    def section_info(self, section: str, **facts: object) -> None:
        """Facts about a section (sizes, load, why something was skipped)."""
        self.sections.setdefault(section, {}).update(facts)

    def to_json(self) -> dict[str, object]:
        by_section: dict[str, dict[str, object]] = {}
        for entry in self.entries:
            by_section.setdefault(entry.section, {})[entry.name] = entry.to_json()
        for section, facts in self.sections.items():
            by_section.setdefault(section, {})["_info"] = facts
        return {"quick": self.quick, "machine": self.machine, "sections": by_section}

    def markdown(self) -> str:
        machine = self.machine
        lines = [
            f"{machine.get('nproc')} CPUs ({machine.get('cpu')}), {machine.get('disk')}, "
            f"Python {machine.get('python')}; 1-minute load {machine.get('load_at_start', 0):.2f} "
            f"at the start, {machine.get('load_at_end', 0):.2f} at the end"
            + (" (--quick: tiny sizes, not figures to quote)" if self.quick else ""),
            "",
            "| Section | Measurement | Median | Min | Max | Unit | Target | Note |",
            "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
        ]
        for entry in sorted(self.entries, key=lambda entry: entry.section):  # by item number
            if entry.sample is not None:
                numbers = [_figure(v) for v in (entry.sample.median, entry.sample.low)]
                numbers.append(_figure(entry.sample.high))
                unit = entry.sample.unit
            else:
                assert entry.value is not None
                numbers = [_figure(entry.value), "", ""]
                unit = entry.unit
            target = ""
            if entry.target is not None:
                bound = ">=" if entry.at_least else "<="
                target = f"{bound} {_figure(entry.target)} {'met' if entry.met else 'MISSED'}"
            cells = [entry.section, entry.name, *numbers, unit, target, entry.note]
            lines.append("| " + " | ".join(cells) + " |")
        skipped = [
            f"- {section}: skipped ({facts['skipped']})"
            for section, facts in self.sections.items()
            if "skipped" in facts
        ]
        return "\n".join([*lines, *(["", *skipped] if skipped else [])]) + "\n"


# --- child processes ----------------------------------------------------------------


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of measured processes.

    Bytecode caching is allowed (an installed wfcli has its ``.pyc`` files), so a
    warm-up run writes the caches and the timed runs measure start-up, not compiling.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for name in ("WF_STORE", "WF_CONFIG"):
        env.pop(name, None)
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def wf_command() -> list[str]:
    """The ``wf`` console script of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "wf"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("wf")
    if found is None:
        raise RuntimeError("no `wf` script: install wfcli into this environment")
    return [found]


@dataclass(frozen=True, slots=True)
class ProcessRun:
    """A finished child process: wall time, peak resident memory, exit code, output."""

    seconds: float
    peak_rss_mib: float
    returncode: int
    stdout: bytes


def run_process(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], check: bool = True
) -> ProcessRun:
    """Run ``argv`` to its end; ``os.wait4`` gives this child's own peak RSS."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdout=output, stderr=subprocess.PIPE
        )
        assert process.stderr is not None
        errors = process.stderr.read()  # small: only failures and notes go there
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stderr.close()
        output.seek(0)
        stdout = output.read()
    run = ProcessRun(seconds, usage.ru_maxrss / 1024, process.returncode, stdout)
    if check and run.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {run.returncode}: {errors.decode(errors='replace')[-2000:]}"
        )
    return run


def time_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    runs: int,
    warmups: int,
    before: Callable[[], None] | None = None,
) -> tuple[Sample, list[ProcessRun]]:
    """Wall time of ``runs`` whole runs of ``argv`` in milliseconds, after ``warmups``."""
    finished = []
    for index in range(warmups + runs):
        if before is not None:
            before()
        run = run_process(argv, cwd=cwd, env=env)
        if index >= warmups:
            finished.append(run)
    return Sample.of("ms", (run.seconds * 1000 for run in finished)), finished


# --- projects -------------------------------------------------------------------------


def write_project(folder: Path, *, fsync: bool = True) -> Path:
    """A ``workflows.toml`` binding the benchmark workflows, with its store in ``store``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "workflows.toml"
    config.write_text(
        "\n".join(
            [
                'name = "wfcli-bench"',
                f"main = {json.dumps(str(BENCH_WORKFLOWS))}",
                "",
                "[store]",
                'dir = "store"',
                f"fsync = {'true' if fsync else 'false'}",
                "",
                "[[workflows]]",
                'name = "steps"',
                'binding = "STEPS"',
                'class_name = "StepsWorkflow"',
                "",
                "[[workflows]]",
                'name = "parked"',
                'binding = "PARKED"',
                'class_name = "ParkedWorkflow"',
                "",
                "[[workflows]]",
                'name = "io_steps"',
                'binding = "IO_STEPS"',
                'class_name = "IoStepsWorkflow"',
                "",
            ]
        ),
        encoding="utf-8",
    )
    return config


# --- the machine ------------------------------------------------------------------------


def load_average() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _disk(path: Path) -> str:
    """The device and file system that holds ``path`` (from /proc/mounts)."""
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best = ("", "unknown")
    for line in mounts:
        device, point, fstype, *_ = line.split()
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best[0]):
            best = (point, f"{device} ({fstype}) at {point}")
    return best[1]


def _git_commit(repo: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def machine_info(work: Path) -> dict[str, object]:
    """What the figures were measured on."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        dbos_version = version("dbos")
    except PackageNotFoundError:
        dbos_version = None
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "disk": _disk(work),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wfcli_commit": _git_commit(Path(__file__).resolve().parent.parent),
        "dbos": dbos_version,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_at_start": load_average(),
    }
