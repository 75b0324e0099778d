"""Sensitive values: journaled and used for real, shown by no command, human or JSON.

Every command is run on a project whose payment workflow has a sensitive param
(``sensitive_params`` in workflows.toml), a ``sensitive=True`` step, an event sent with
``--sensitive``, and an instance run with ``wf run --sensitive``; the outputs are
searched for the secrets. The journal still holds them (as documented).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.sensitive_workflows import CARD, PIN, SECRET, SECRETS, TOKEN_PREFIX
from tests.workflows_for_tests import wait_until
from wfcli.cli import app
from wfcli.core.codec import Created, EventReceived, StepCompleted, decode_line, encode_record
from wfcli.core.redaction import REDACTED, param_pointers, redact, shown_record
from wfcli.testing import WorkflowHarness

_MODULE = Path(__file__).parent / "sensitive_workflows.py"


def write_project(tmp_path: Path, max_inline_wait: str = "0 seconds") -> list[str]:
    config = tmp_path / "workflows.toml"
    config.write_text(
        f'name = "redaction"\n\n[defaults]\nmax_inline_wait = "{max_inline_wait}"\n\n'
        f'[store]\ndir = "store"\nfsync = false\n\n'
        f'[[workflows]]\nname = "pay"\nbinding = "PAY"\nclass_name = "Payment"\n'
        f'main = "{_MODULE}"\nsensitive_params = ["card"]\n\n'
        f'[[workflows]]\nname = "keep"\nbinding = "KEEP"\nclass_name = "Keeper"\n'
        f'main = "{_MODULE}"\n',
        encoding="utf-8",
    )
    return ["--config", str(config)]


@pytest.fixture
def project(tmp_path: Path) -> list[str]:
    return write_project(tmp_path)


class Session:
    """Runs ``wf`` commands and keeps every output to search."""

    def __init__(self, options: list[str]) -> None:
        self.options = options
        self.outputs: list[tuple[str, str]] = []
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int | None = 0) -> Result:
        result = self.runner.invoke(app, [*args, *self.options])
        self.outputs.append((" ".join(args), result.stdout + result.stderr))
        if code is not None:
            assert result.exit_code == code, (args, result.output)
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)

    def views(self, instance_id: str, tmp: Path) -> None:
        """Every command that shows an instance, human and JSON."""
        for command in ("status", "history", "timeline"):
            self(command, instance_id)
            self.json(command, instance_id)
        self("status", instance_id, "--verbose")
        self("list")
        self.json("list")
        svg, html = tmp / f"{instance_id}.svg", tmp / f"{instance_id}.html"
        self("timeline", instance_id, "--svg", str(svg), "--html", str(html))
        self.outputs.append(("timeline files", svg.read_text() + html.read_text()))


def test_no_command_shows_a_sensitive_value(project: list[str], tmp_path: Path) -> None:
    wf = Session(project)
    params = json.dumps({"card": CARD, "amount": 5})
    waiting = wf.json("run", "pay", "--id", "p1", "--params", params, code=3)
    assert waiting["params"] == {"card": REDACTED, "amount": 5}
    tokenize = waiting["steps"][0]
    assert (tokenize["name"], tokenize["output"]) == ("tokenize", REDACTED)
    wf("run", "pay", "--id", "p2", "--params", params, code=3)  # the human progress lines
    wf.views("p1", tmp_path)

    payload = json.dumps({"pin": PIN})
    wf("send-event", "p1", "--type", "pin", "--payload", payload, "--sensitive")
    wf("send-event", "p2", "--type", "pin", "--payload", payload, "--sensitive")
    done = wf.json("status", "p1")
    assert done["status"] == "complete"
    assert done["output"] == {"paid": True, "amount": 5}  # the workflow had the real values
    assert done["steps"][1]["output"]["payload"] == REDACTED
    history = wf.json("history", "p1")["records"]
    received = next(r for r in history if r["type"] == "event_received")
    assert (received["payload"], received["sensitive"]) == (REDACTED, True)
    wf.views("p1", tmp_path)

    detached = wf.json(
        "run",
        "keep",
        "--id",
        "k1",
        "--params",
        json.dumps({"secret": SECRET}),
        "--detach",
        "--sensitive",
    )
    assert detached["params"] == REDACTED
    wf("resume", "k1", code=3)
    wf.json("resume", "k1", code=3)
    wf("pause", "k1")
    wf("resume", "k1", code=3)
    wf.views("k1", tmp_path)
    wf("send-event", "k1", "--type", "go")
    assert wf.json("status", "k1")["output"] == {"had_secret": True}
    wf("run", "pay", "--id", "p3", "--params", params, code=3)
    wf("terminate", "p3")
    wf.views("p3", tmp_path)
    wf("restart", "p1", "--from-step", "charge")
    wf("replay", "p1")
    report = wf.json("replay", "--all")
    assert all(entry["compatible"] for entry in report["instances"]), report  # real values
    wf("worker", "--once")
    wf("workflows")
    wf.json("workflows")
    wf("doctor")
    wf.json("doctor")
    wf.views("p1", tmp_path)
    wf("delete", "k1")
    wf("prune", "--older-than", "0 seconds")

    assert len(wf.outputs) > 60
    for command, output in wf.outputs:
        for secret in SECRETS:
            assert secret not in output, f"{secret!r} shown by wf {command}"


def test_the_journal_and_an_export_keep_the_real_values(project: list[str], tmp_path: Path) -> None:
    wf = Session(project)
    wf("run", "pay", "--id", "p1", "--params", json.dumps({"card": CARD, "amount": 5}), code=3)
    journal = (tmp_path / "store" / "journals" / "p1.jsonl").read_text()
    assert CARD in journal  # what the docs say is still on disk, in clear
    assert TOKEN_PREFIX + CARD in journal
    exported = wf("export", "p1").stdout  # an export is the data, for import elsewhere
    assert CARD in exported


def test_the_python_api_and_the_harness_mark_values_sensitive() -> None:
    from tests.sensitive_workflows import Payment

    harness = WorkflowHarness()
    harness.client.sensitive_params["pay"] = ("card",)
    harness.register(Payment, "pay")
    first = harness.run("pay", params={"card": CARD, "amount": 1}, instance_id="a")
    assert first.status == "waiting"
    status = harness.client.status("a")
    assert status.to_json()["params"] == {"card": REDACTED, "amount": 1}
    assert status.state.params == {"card": CARD, "amount": 1}  # the state has the real value
    harness.send_event("a", "pin", {"pin": PIN}, sensitive=True)
    done = harness.client.status("a")
    assert done.status == "complete"
    assert done.output == {"paid": True, "amount": 1}
    document = json.dumps(done.to_json())
    assert CARD not in document
    assert PIN not in document
    harness.run("pay", params={"card": CARD, "amount": 2}, instance_id="b")
    harness.client.get("b").send_event("pin", {"pin": PIN}, sensitive=True)  # the handle's
    assert harness.execute("b").status == "complete"
    assert PIN not in json.dumps(harness.client.status("b").to_json())


def test_records_mark_what_views_redact_and_old_lines_read_as_before() -> None:
    at = Created(
        at=__import__("datetime").datetime(2030, 1, 1, tzinfo=__import__("datetime").timezone.utc),
        instance_id="i",
        workflow="w",
        params={"card": CARD, "n": [1, {"pin": PIN}]},
        sensitive_params=["/card", "/n/1/pin"],
    )
    line = encode_record(at, 1)
    assert '"version"' not in line  # left out while the field after it is written
    assert decode_line(line.encode())[0] == at
    assert shown_record(at).params == {"card": REDACTED, "n": [1, {"pin": REDACTED}]}  # type: ignore[attr-defined]
    plain = Created(at=at.at, instance_id="i", workflow="w", params=1)
    assert "sensitive" not in encode_record(plain, 1)
    assert shown_record(plain) is plain
    step = StepCompleted(at=at.at, step="s", kind="do", attempt=1, output=CARD, sensitive=True)
    assert shown_record(step).output == REDACTED  # type: ignore[attr-defined]
    assert '"sensitive":true' in encode_record(step, 2)
    event = EventReceived(at=at.at, message_id="m", event_type="t", payload=PIN, sensitive=True)
    assert shown_record(event).payload == REDACTED  # type: ignore[attr-defined]
    assert param_pointers(["a/b", "c~d"]) == ["/a~1b", "/c~0d"]
    assert redact({"a/b": 1, "c~d": 2, "e": 3}, param_pointers(["a/b", "c~d", "zz"])) == {
        "a/b": REDACTED,
        "c~d": REDACTED,
        "e": 3,
    }
    assert redact([1, 2], [""]) == REDACTED
    assert redact({"a": None}, ["/a/b", "/x/0"]) == {"a": None}  # pointers to nothing


def test_a_bad_sensitive_params_entry_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "workflows.toml"
    config.write_text(
        f'name = "bad"\n\n[[workflows]]\nname = "pay"\nbinding = "PAY"\n'
        f'class_name = "Payment"\nmain = "{_MODULE}"\nsensitive_params = "card"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["workflows", "--config", str(config)])
    assert result.exit_code == 2
    assert "sensitive_params" in result.stderr
    assert "expected an array of key names" in result.stderr


def test_a_run_killed_after_a_sensitive_step_resumes_with_the_real_value(tmp_path: Path) -> None:
    """SIGKILL a real ``wf run`` while it waits inline for the PIN, after the sensitive
    step is journaled; resumed, the run takes the event and the recorded (real) token."""
    options = write_project(tmp_path, max_inline_wait="1 hour")
    params = json.dumps({"card": CARD, "amount": 9})
    command = [sys.executable, "-m", "wfcli", "run", "pay", "--id", "k", "--params", params]
    child = subprocess.Popen(
        [*command, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    journal = tmp_path / "store" / "journals" / "k.jsonl"
    try:
        wait_until(
            lambda: journal.exists() and '"wait_started"' in journal.read_text(),
            "the run to wait for the PIN",
            child,
        )
    finally:
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate()
    assert child.returncode == -signal.SIGKILL
    wf = Session(options)
    interrupted = wf.json("status", "k")
    assert interrupted["interrupted"] is True
    assert interrupted["steps"][0]["output"] == REDACTED
    payload = json.dumps({"pin": PIN})
    wf("send-event", "k", "--type", "pin", "--payload", payload, "--sensitive")
    wf("resume", "k")  # the interrupted run goes on, and takes the event
    done = wf.json("status", "k")
    assert done["status"] == "complete"
    assert done["output"] == {"paid": True, "amount": 9}  # tokenize was served, for real
    assert sum(r["type"] == "attempt_started" for r in wf.json("history", "k")["records"]) == 2
    for command_line, output in [*wf.outputs, ("run (killed)", out + err)]:
        for secret in SECRETS:
            assert secret not in output, f"{secret!r} shown by wf {command_line}"
