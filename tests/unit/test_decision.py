"""Each outcome is classified once, from its typed error: what the daemon and status read."""

from __future__ import annotations

import pytest

from reconciler import errors
from reconciler.engine import decision, execute
from reconciler.models import kinds
from reconciler.planning import actions
from tests.unit import fakes

CHANGE = actions.Change(
    key=fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1"), verb=actions.Verb.UPDATE
)


def _failed(exc: errors.InfinibayError) -> execute.Outcome:
    return execute.Outcome(CHANGE, ok=False, error=str(exc), failure=exc)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (errors.ConflictError("not ours"), decision.Terminal("Conflict", "not ours")),
        (
            errors.DataLossRefused("would destroy"),
            decision.Terminal("DataLossRefused", "would destroy"),
        ),
        (errors.RefusedError("protected"), decision.Terminal("Refused", "protected")),
        (
            errors.HypervisorError("define", "domain web-1", "XML error", retryable=False),
            decision.Terminal("InvalidConfiguration", "define domain web-1 failed: XML error"),
        ),
        (
            errors.HypervisorError("start", "domain web-1", "socket closed"),
            decision.Transient("ApplyFailed", "start domain web-1 failed: socket closed"),
        ),
        (errors.StoreError("record down"), decision.Transient("ApplyFailed", "record down")),
    ],
)
def test_a_failed_change_is_decided_from_its_typed_error(
    failure: errors.InfinibayError, expected: decision.Decision
) -> None:
    assert decision.decide(_failed(failure)) == expected


def test_success_is_done_and_a_failed_dependency_is_waiting() -> None:
    assert decision.decide(execute.Outcome(CHANGE)) == decision.Done()
    blocked = execute.Outcome(CHANGE, ok=False, error="depends on Network/lab, which failed")
    assert decision.decide(blocked) == decision.Waiting(
        "DependencyFailed", "depends on Network/lab, which failed"
    )


def test_an_exception_that_ended_a_pass_is_decided_the_same_way() -> None:
    assert isinstance(decision.decide(errors.Fenced("lease lost")), decision.Waiting)
    assert isinstance(decision.decide(errors.ManifestError(["x"])), decision.Terminal)
    assert decision.decide(errors.ConflictError("c")) == decision.Terminal("Conflict", "c")


def test_conflict_and_data_loss_refusals_are_still_refusals() -> None:
    assert issubclass(errors.ConflictError, errors.RefusedError)
    assert issubclass(errors.DataLossRefused, errors.RefusedError)
    assert errors.HypervisorError("a", "b", "c").retryable
    assert errors.NotFoundError("a", "b", "c").retryable


def test_a_taken_writer_lock_is_requeued_after_a_fixed_delay() -> None:
    assert decision.decide(errors.LockTimeout("held by pid 7")) == decision.Requeue(
        decision.REQUEUE_AFTER, "Locked", "held by pid 7"
    )


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (errors.ConflictError("not ours"), "Conflict"),
        (errors.DataLossRefused("would destroy"), "ApplyRefused"),
        (errors.RefusedError("outside the roots"), "ApplyRefused"),
        (errors.HypervisorError("define", "web", "bad XML", retryable=False), "ApplyFailed"),
        (errors.HypervisorError("start", "web", "socket closed"), "ApplyFailed"),
    ],
)
def test_the_event_a_failed_change_records_is_named_from_its_decision(
    error: errors.InfinibayError, reason: str
) -> None:
    assert decision.event_reason(error) == reason


def test_a_corrupt_record_is_not_retried() -> None:
    corrupt = errors.RecordCorrupt("VirtualMachine/web-1: spec.effective.disks[0]: not a disk")
    assert decision.decide(corrupt) == decision.Terminal("RecordCorrupt", str(corrupt))
