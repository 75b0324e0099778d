"""The public API: every name ``wfcli.__all__`` promises is there, lazily loaded or not."""

from __future__ import annotations

import subprocess
import sys

import pytest

import wfcli


def test_every_exported_name_resolves_to_an_object_of_that_name() -> None:
    for name in wfcli.__all__:
        value = getattr(wfcli, name)
        if name != "__version__":
            assert getattr(value, "__name__", name) == name, name
    assert len(set(wfcli.__all__)) == len(wfcli.__all__)  # no name listed twice
    assert set(wfcli.__all__) <= set(dir(wfcli))


def test_star_import_and_version_work_in_a_fresh_interpreter() -> None:
    code = (
        "from wfcli import *\n"
        "import wfcli\n"
        "assert WorkflowEntrypoint and WorkflowClient and FakeClock and NonRetryableError\n"
        "assert wfcli.__version__ and wfcli.__version__ != '0.0.0', wfcli.__version__\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = wfcli.NoSuchThing  # type: ignore[attr-defined]
