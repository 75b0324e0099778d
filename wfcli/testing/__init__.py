"""Testing workflows and stores: the in-process harness, a fake clock, and the store
contract suite every store's tests subclass."""

from wfcli.testing.harness import Attempt, FakeClock, RunResult, WorkflowHarness

__all__ = ["Attempt", "FakeClock", "RunResult", "WorkflowHarness"]
