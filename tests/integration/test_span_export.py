"""The gateway's span export queue (adapters.span_export.ExportPipe) with its real child
process: what was queued is exported there, what found the queue full is dropped and
counted."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource

from adapters.span_export import FRAME, ExportPipe
from contract.spans import SpanRecord


def record(name: str) -> SpanRecord:
    return (name, 1, 7, 8, 0, False, 1, "", 1, 2, {"k": "v"}, 0, "", (), ())


def test_the_export_queue_is_bounded_and_counts_its_drops(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A real child process with the console exporter: what was queued is exported by it
    (its stdout is this process's), what found the queue full is counted, not kept."""
    pipe = ExportPipe("console", Resource({"service.name": "t"}), "scope", max_queue=3, delay_s=60)
    try:
        for i in range(5):  # the sender thread waits 60 s or for a full batch: nothing leaves
            pipe.emit(record(f"span-{i}"))
        assert pipe.dropped == 2
    finally:
        pipe.close()
    out = capfd.readouterr().out
    assert [f'"span-{i}"' in out for i in range(5)] == [True, True, True, False, False]
    assert pipe.dropped == 2


def test_batches_cross_in_frames_and_every_span_is_exported(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """More records than a frame holds, in batches of 100 on a timer: each crosses in frames
    (adapters.span_export.FRAME) and the child exports every one, once."""
    count = 3 * FRAME + 17
    pipe = ExportPipe(
        "console",
        Resource({"service.name": "t"}),
        "scope",
        max_queue=4 * FRAME,
        delay_s=0.05,
        max_batch=100,
    )
    try:
        for i in range(count):
            pipe.emit(record(f"span-{i}"))
    finally:
        pipe.close()
    out = capfd.readouterr().out
    assert pipe.dropped == 0
    assert [out.count(f'"span-{i}"') for i in range(count)] == [1] * count
