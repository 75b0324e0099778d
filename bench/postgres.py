"""The PostgreSQL store (section 8): per step against a bare fenced insert, workers,
against DBOS Transact on the same server, listing.

The server is ``$WF_BENCH_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``); the section makes a database of
its own there, a schema per store in it, and drops the database at the end. Without
psycopg or without a server it is skipped, and the report says which.

The per-step floor is what a durable log in PostgreSQL must pay for one step: one
autocommit statement that checks the lease epoch and the next line number of the
instance row, bumps the line number and inserts one journal line (the shape of the
store's append), waiting for the commit's WAL flush. Floor and product alternate.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from wfcli import WorkflowClient

from .harness import Report, Sample, Sizes, child_env, time_process, wf_command, write_project
from .peer import dbos_available, run_dbos, time_wfcli_instances
from .steps import FLOOR_RECORD
from .workloads import IoStepsWorkflow, StepsWorkflow, TimedStepsWorkflow

__all__ = ["DEFAULT_SERVER", "postgres"]

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
_SECTION = "8 postgres"
_WORKERS = (1, 2, 4)
_IO_STEPS = 3
_IO_MS = 5  # each step's callback sleeps this long, standing for I/O

# The floor's statement: the fence of the store's append (lease epoch, worker, expiry,
# next line number) and the journal insert, in one autocommit statement.
_FLOOR = """
WITH fence AS (
    UPDATE wf_instance SET next_line = next_line + 1,
        lease_expires = now() + interval '30 seconds'
    WHERE instance_id = %(id)s AND lease_epoch = %(epoch)s AND lease_worker = %(worker)s
        AND lease_expires > now() AND next_line = %(n)s
    RETURNING 1)
INSERT INTO wf_journal (instance_id, line_no, epoch, line)
SELECT %(id)s, %(n)s, %(epoch)s, %(line)s FROM fence
"""


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _with_schema(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (libpq ``options``)."""
    parts = urlsplit(url)
    query = [parts.query] if parts.query else []
    query.append("options=" + quote(f"-csearch_path={schema}", safe=""))
    return urlunsplit(parts._replace(query="&".join(query)))


class _Database:
    """The section's own database; :meth:`store_url` makes a fresh schema for a store."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._count = 0

    def store_url(self) -> str:
        import psycopg

        self._count += 1
        schema = f"b{self._count}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}".encode())
        return _with_schema(self.url, schema)


def _pg_store(url: str, *, durable: bool = True) -> Any:
    from wfcli.store.postgres import PgStore

    return PgStore(url, durable=durable)


# --- 1: per step ------------------------------------------------------------------------


def _floor(url: str, lines: int) -> float:
    """Microseconds per fenced ``INSERT ... COMMIT`` of one ``step_completed`` line."""
    import psycopg

    instance = f"floor-{uuid.uuid4().hex[:12]}"
    record = dict(FLOOR_RECORD)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO wf_instance (instance_id, workflow, status, created, summary,"
            " next_line, lease_epoch, lease_worker, lease_expires)"
            " VALUES (%s, 'floor', 'running', now(), '{}', 1, 1, 'floor',"
            " now() + interval '30 seconds')",
            (instance,),
        )
        parameters: dict[str, object] = {"id": instance, "epoch": 1, "worker": "floor"}

        def one(n: int) -> None:
            record["n"] = n
            record["step"] = f"step-{n}"
            parameters["n"] = n
            parameters["line"] = json.dumps(record, separators=(",", ":"))
            if conn.execute(_FLOOR, parameters).rowcount != 1:
                raise RuntimeError(f"the floor's fence refused line {n}")

        one(1)  # warm-up, like the product's first step
        started = time.perf_counter()
        for n in range(2, lines + 2):
            one(n)
        elapsed = time.perf_counter() - started
    return elapsed / lines * 1e6


def _product(url: str, steps: int) -> float:
    """Microseconds per durable ``step.do`` (trivial callback) on a fresh PgStore."""
    store = _pg_store(url)
    try:
        client = WorkflowClient(store, {"timed": TimedStepsWorkflow})
        instance = client.create("timed", params={"steps": steps})
        client.execute(instance.id)
    finally:
        store.close()
    return TimedStepsWorkflow.elapsed.pop(instance.id) / steps * 1e6


def _per_step(report: Report, database: _Database, sizes: Sizes) -> None:
    url = database.store_url()
    _pg_store(url).close()  # creates the tables
    _product(url, 2)
    steps = sizes.step_count_durable
    floors, products = [], []
    for run in range(sizes.runs):
        if run % 2 == 0:
            floors.append(_floor(url, steps))
            products.append(_product(url, steps))
        else:
            products.append(_product(url, steps))
            floors.append(_floor(url, steps))
    floor = report.add(
        _SECTION,
        "floor: fenced INSERT ... COMMIT of one journal line",
        Sample.of("us", floors),
    )
    product = report.add(
        _SECTION, "step.do, trivial callback, PgStore (durable)", Sample.of("us", products)
    )
    report.ratio(
        _SECTION, "step.do / fenced insert (medians)", product.median / floor.median, target=1.5
    )
    report.section_info(_SECTION, steps_per_run=steps)


# --- 2: workers ---------------------------------------------------------------------------


def _postgres_cpu() -> float | None:
    """CPU seconds of the server's processes so far, if they are visible in /proc:
    the live ones' own time plus what the postmaster collected from exited backends."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    found = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8")
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name != "postgres" and not name.startswith("postgres:"):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found = True
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if fields[1] == "1" or name == "postgres":  # the postmaster: reaped children
            total += int(fields[13]) + int(fields[14])
    return total / tick if found else None


def _timed_window(store: Any) -> float:
    """Seconds from the first claim to the last completion, from the journals' own
    times: the workers' start-up and exit are left out."""
    row = store.run(
        lambda conn: conn.execute(
            """
            SELECT min(line::jsonb->>'at') FILTER (WHERE line::jsonb->>'type' = 'run_started'),
                   max(line::jsonb->>'at') FILTER (WHERE line::jsonb->>'type' = 'finished')
            FROM wf_journal
            """
        ).fetchone()
    )
    first, last = (datetime.fromisoformat(value) for value in row)
    return (last - first).total_seconds()


def _worker_round(
    database: _Database, project: Path, instances: int, processes: int
) -> tuple[float, float, float | None]:
    """Instances per second through ``processes`` workers (first claim to last
    completion), their CPU and the server's (cores busy over the processes' lifetime)."""
    url = database.store_url()
    store = _pg_store(url)
    try:
        client = WorkflowClient(store, {"io_steps": IoStepsWorkflow})
        for _ in range(instances):
            client.create("io_steps", params={"steps": _IO_STEPS, "io_ms": _IO_MS})
        env = child_env()
        argv = [*wf_command(), "worker", "--once", "--concurrency", "1", "--store", url]
        server_before = _postgres_cpu()
        started = time.perf_counter()
        workers = [
            subprocess.Popen(
                argv, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for _ in range(processes)
        ]
        cpu = 0.0
        codes = []
        for worker in workers:
            _, status, usage = os.wait4(worker.pid, 0)
            worker.returncode = os.waitstatus_to_exitcode(status)
            codes.append(worker.returncode)
            cpu += usage.ru_utime + usage.ru_stime
        elapsed = time.perf_counter() - started
        server_after = _postgres_cpu()
        if any(codes):
            raise RuntimeError(f"wf worker exited {codes}")
        unfinished = [s.id for s in client.list_instances() if s.status != "complete"]
        if unfinished:
            raise RuntimeError(f"{len(unfinished)} instances not complete after the workers")
        window = _timed_window(store)
    finally:
        store.close()
    server = None
    if server_before is not None and server_after is not None:
        server = (server_after - server_before) / elapsed
    return instances / window, cpu / elapsed, server


def _workers(report: Report, database: _Database, work: Path, sizes: Sizes) -> None:
    project = work / "workers"
    write_project(project)
    instances = sizes.pg_worker_instances
    rates: dict[int, list[float]] = {count: [] for count in _WORKERS}
    worker_cpu: dict[int, list[float]] = {count: [] for count in _WORKERS}
    server_cpu: dict[int, list[float]] = {count: [] for count in _WORKERS}
    for run in range(sizes.worker_rounds):
        order = _WORKERS if run % 2 == 0 else tuple(reversed(_WORKERS))
        for processes in order:
            rate, cpu, server = _worker_round(database, project, instances, processes)
            rates[processes].append(rate)
            worker_cpu[processes].append(cpu)
            if server is not None:
                server_cpu[processes].append(server)
    cores = os.cpu_count() or 1
    for processes in _WORKERS:
        note = f"workers busy {max(worker_cpu[processes]):.2f}"
        if server_cpu[processes]:
            note += f", server {max(server_cpu[processes]):.2f}"
        note += f" of {cores} cores (max over runs)"
        report.add(
            _SECTION,
            f"`wf worker --once --concurrency 1` x{processes}, {instances} queued instances of "
            f"{_IO_STEPS} steps waiting {_IO_MS} ms each (first claim to last completion)",
            Sample.of("inst/s", rates[processes]),
            note=note,
        )
    one = Sample.of("inst/s", rates[1]).median
    four = Sample.of("inst/s", rates[4]).median
    speedup = four / one
    report.ratio(
        _SECTION,
        "x4 / x1 workers (medians)",
        speedup,
        note=f"target >= 2.5: {'met' if speedup >= 2.5 else 'MISSED'}",
    )
    report.section_info(
        _SECTION, pg_worker_instances=instances, io_steps=_IO_STEPS, io_ms_per_step=_IO_MS
    )


# --- 3: against DBOS Transact on the same server ------------------------------------------


def _versus_dbos(
    report: Report, server: str, database: _Database, work: Path, sizes: Sizes
) -> None:
    """Per step in ``peer_large_steps``-step instances: wfcli's PgStore against DBOS with
    its system database on the same server (a database of its own, dropped after), both
    with each commit waiting for its WAL flush (the defaults), then both without
    (``synchronous_commit = off``: wfcli's ``fsync = false``, and the setting on DBOS's
    database), which leaves each side's own work per step."""
    if not dbos_available():
        report.section_info(_SECTION, dbos="dbos is not installed: pip install -e '.[bench]'")
        return
    for durable in (True, False):
        _dbos_round(report, server, database, work, sizes, durable=durable)
    report.section_info(_SECTION, dbos="its own database on the same server, dropped after")


def _dbos_round(
    report: Report,
    server: str,
    database: _Database,
    work: Path,
    sizes: Sizes,
    *,
    durable: bool,
) -> None:
    import psycopg

    steps, count = sizes.peer_large_steps, max(2, sizes.runs)
    name = f"wfbench_dbos_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
        if not durable:
            conn.execute(f"ALTER DATABASE {name} SET synchronous_commit = off".encode())
    try:
        folder = work / f"dbos-{name}"
        folder.mkdir(parents=True)
        theirs = run_dbos(folder, steps, 1, count, database=_with_database(server, name))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
    store = _pg_store(database.store_url(), durable=durable)
    try:
        ours = time_wfcli_instances(store, steps, count)
    finally:
        store.close()
    commits = "flushed commits" if durable else "synchronous_commit = off"
    medians = {}
    for side, times in (("wfcli PgStore", ours), ("DBOS on PostgreSQL", theirs["large"])):
        medians[side] = report.add(
            _SECTION,
            f"{side}: per step, in {steps}-step instances, {commits}",
            Sample.of("ms", times).scaled(1000 / steps, "us"),
        ).median
    report.ratio(
        _SECTION,
        f"wfcli / DBOS per step on PostgreSQL, {commits} (medians)",
        medians["wfcli PgStore"] / medians["DBOS on PostgreSQL"],
        target=0.1,
    )


# --- 4: listing ---------------------------------------------------------------------------


def _template(url: str) -> str:
    """One complete 3-step instance, written by the store; its ID."""
    store = _pg_store(url)
    try:
        client = WorkflowClient(store, {"steps": StepsWorkflow})
        instance = client.create("steps", params={"steps": 3})
        if client.execute(instance.id).status != "complete":
            raise RuntimeError("the template instance did not complete")
        return str(instance.id)
    finally:
        store.close()


def _copy(url: str, template: str, first: int, last: int) -> None:
    """Copies ``first..last`` of the template's rows: the same rows, another ID."""
    import psycopg

    new_id = "'b' || lpad(n::text, 7, '0')"
    parameters = {"template": template, "first": first, "last": last}
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            f"""
            INSERT INTO wf_instance (instance_id, workflow, status, created, wait_until,
                event_ready, summary, next_line, lease_epoch)
            SELECT {new_id}, workflow, status, created, wait_until, event_ready,
                replace(summary, %(template)s, {new_id}), next_line, lease_epoch
            FROM wf_instance, generate_series(%(first)s::int, %(last)s::int) AS n
            WHERE instance_id = %(template)s
            """.encode(),
            parameters,
        )
        conn.execute(
            f"""
            INSERT INTO wf_journal (instance_id, line_no, epoch, line)
            SELECT {new_id}, line_no, epoch, replace(line, %(template)s, {new_id})
            FROM wf_journal, generate_series(%(first)s::int, %(last)s::int) AS n
            WHERE instance_id = %(template)s
            """.encode(),
            parameters,
        )
        conn.execute("ANALYZE wf_instance")
        conn.execute("ANALYZE wf_journal")


def _listing(report: Report, database: _Database, work: Path, sizes: Sizes) -> None:
    project = work / "list"
    write_project(project)
    url = database.store_url()
    template = _template(url)
    small, large = (20, 200) if sizes.quick else (10_000, 100_000)
    budget = 10.0 if sizes.quick else 120.0  # seconds the bulk set-up may take
    made = 1
    for count in (small, large):
        started = time.perf_counter()
        _copy(url, template, made, count - 1)
        setup = time.perf_counter() - started
        made = count
        report.section_info(_SECTION, **{f"list_setup_seconds_{count}": round(setup, 1)})
        sample, runs = time_process(
            [*wf_command(), "list", "--json", "--limit", "100", "--store", url],
            cwd=project,
            env=child_env(),
            runs=sizes.process_runs,
            warmups=sizes.warmups,
        )
        listed = json.loads(runs[-1].stdout)["instances"]
        if len(listed) != min(100, count):
            raise RuntimeError(f"wf list --limit 100 showed {len(listed)} instances")
        report.add(
            _SECTION,
            f"`wf list --json --limit 100`, {count:,} instances",
            sample,
            note=f"bulk set-up {setup:.1f} s (INSERT ... SELECT generate_series)",
        )
        if count == small and setup * (large - small) / small > budget:
            report.section_info(
                _SECTION, list_largest=count, list_note=f"{large:,} would take too long"
            )
            return
    report.section_info(_SECTION, list_largest=large)


# --- the section ----------------------------------------------------------------------------


def postgres(report: Report, work: Path, sizes: Sizes) -> None:
    """Per step against a fenced insert, workers x1/x2/x4, DBOS, ``wf list`` on PostgreSQL."""
    server = os.environ.get("WF_BENCH_POSTGRES") or DEFAULT_SERVER
    if importlib.util.find_spec("psycopg") is None:
        report.section_info(
            _SECTION, skipped="psycopg is not installed: pip install -e '.[postgres]'"
        )
        return
    import psycopg

    try:
        psycopg.connect(server, connect_timeout=3).close()
    except psycopg.Error as error:
        reason = " ".join(str(error).split())
        report.section_info(
            _SECTION,
            skipped=f"no PostgreSQL server at {server} (set WF_BENCH_POSTGRES): {reason}",
        )
        return
    work.mkdir(parents=True, exist_ok=True)
    name = f"wfbench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        conn.execute(f"CREATE DATABASE {name}".encode())
    report.section_info(_SECTION, server_version=version[0] if version else "unknown")
    try:
        database = _Database(_with_database(server, name))
        _per_step(report, database, sizes)
        _workers(report, database, work, sizes)
        _versus_dbos(report, server, database, work, sizes)
        _listing(report, database, work, sizes)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
