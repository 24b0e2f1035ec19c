"""Our OTLP wire encoder (adapters.otlp_wire) writes the same ExportTraceServiceRequest as the
SDK's `encode_spans` of the same spans: both parsed and compared as messages."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from adapters.otlp_wire import Encoder
from adapters.span_export import readable
from contract.spans import SpanRecord

RESOURCE = Resource({"service.name": "modelyard-gateway", "deployment": "test", "replicas": 3})
SCOPE = InstrumentationScope("modelyard.gateway")
ROOT: SpanRecord = (
    "POST /models/{name}/{api}",
    1,  # SERVER
    (1 << 127) | 12345,
    (1 << 63) | 7,
    0,
    False,
    1,
    "",
    1_700_000_000_000_000_000,
    1_700_000_000_001_500_000,
    {"model.name": "iris", "modelyard.route.revision": 12, "modelyard.retry": False},
    0,
    "",
    (),
    (),
)
CHILD_OF_REMOTE: SpanRecord = (
    "POST /classify",
    2,  # CLIENT
    0xAB * (1 << 120) + 99,
    3,
    0xCDCD,
    True,
    1,
    "vendor=x,other=y",
    5,
    10,
    {"http.response.status_code": 503, "ratio": 0.25, "négatif": -4, "empty": ""},
    2,  # ERROR
    "upstream_unavailable: the model is down",
    (
        ("exception", 7, {"exception.type": "OSError", "exception.escaped": "False"}),
        ("fallback", 8, {}),
    ),
    ((1, 2, 1, ""), ((1 << 128) - 1, (1 << 64) - 1, 0, "a=b")),
)
ERROR_NO_TEXT: SpanRecord = (*ROOT[:11], 2, "", (), ())
CHILD_NO_STATE: SpanRecord = (*ROOT[:4], 0xEF01, False, *ROOT[6:])  # (ids and parent: one pack)


def parsed(data: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    message.ParseFromString(data)
    return message


@pytest.mark.parametrize(
    "records",
    [
        [ROOT],
        [CHILD_OF_REMOTE],
        [ERROR_NO_TEXT],
        [CHILD_NO_STATE],
        [ROOT, CHILD_OF_REMOTE, ERROR_NO_TEXT, CHILD_NO_STATE],
    ],
)
def test_the_same_message_as_the_sdks_encoder(records: list[SpanRecord]) -> None:
    ours = Encoder(RESOURCE, SCOPE).encode(records)
    theirs = encode_spans([readable(r, RESOURCE, SCOPE) for r in records]).SerializeToString()
    assert parsed(ours) == parsed(theirs)
    spans = parsed(ours).resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == [r[0] for r in records]  # not two empty messages


def test_kept_parts_tell_a_bool_from_an_int_and_repeat_exactly() -> None:
    """Attribute sets are kept encoded by value: `True` and `1` (equal in Python) stay apart,
    and a set seen before encodes to the same bytes."""
    as_bool: SpanRecord = (*ROOT[:10], {"x": True}, *ROOT[11:])
    as_int: SpanRecord = (*ROOT[:10], {"x": 1}, *ROOT[11:])
    encoder = Encoder(RESOURCE, SCOPE)
    for records in ([as_bool, as_int], [as_int, as_bool], [ROOT, ROOT, CHILD_OF_REMOTE]):
        ours = encoder.encode(records)
        theirs = encode_spans([readable(r, RESOURCE, SCOPE) for r in records]).SerializeToString()
        assert parsed(ours) == parsed(theirs)
        assert encoder.encode(records) == ours


def test_spans_encoded_one_by_one_make_the_same_message() -> None:
    """The exporting child encodes each frame's spans as they arrive (`Encoder.span`) and
    joins them at the batch's end (`message`): the same bytes as `encode` of the batch."""
    encoder = Encoder(RESOURCE, SCOPE)
    records = [ROOT, CHILD_OF_REMOTE, ERROR_NO_TEXT]
    assert encoder.message([encoder.span(r) for r in records]) == encoder.encode(records)


@pytest.mark.parametrize("size", [127, 128, 16_383, 16_384, 100_000])
def test_lengths_of_every_size_are_the_sdks(size: int) -> None:
    """Lengths below 16,384 come from a table, longer ones are computed: both right."""
    record: SpanRecord = (*ROOT[:10], {"big": "x" * size}, *ROOT[11:])
    ours = Encoder(RESOURCE, SCOPE).encode([record])
    theirs = encode_spans([readable(record, RESOURCE, SCOPE)]).SerializeToString()
    assert parsed(ours) == parsed(theirs)


def test_the_child_posts_one_message_per_batch_with_every_span() -> None:
    """adapters.span_export's OTLP sender: frames added, one post at the batch's end (or when
    `max_batch` spans wait), none for an empty batch."""
    from adapters.span_export import _Encoded

    posts: list[bytes] = []
    encoder = Encoder(RESOURCE, SCOPE)
    batches = _Encoded(posts.append, encoder, max_batch=4)
    batches.add([ROOT, CHILD_OF_REMOTE])
    batches.add([ERROR_NO_TEXT])
    assert posts == []
    batches.flush()
    batches.flush()  # nothing waits: no empty export
    batches.add([ROOT, ROOT, ROOT, ROOT])  # max_batch reached: sent at once
    assert posts == [
        encoder.encode([ROOT, CHILD_OF_REMOTE, ERROR_NO_TEXT]),
        encoder.encode([ROOT] * 4),
    ]


def test_our_bytes_are_the_sdks_bytes() -> None:
    """Not only the same message: the same bytes (field order, lengths), what the exporting
    child posted before its fast path and posts now."""
    records = [ROOT, CHILD_OF_REMOTE, ERROR_NO_TEXT, CHILD_NO_STATE]
    encoder = Encoder(RESOURCE, SCOPE)
    theirs = encode_spans([readable(r, RESOURCE, SCOPE) for r in records]).SerializeToString()
    assert encoder.encode(records) == theirs
    assert encoder.message([encoder.frame(records)]) == theirs


REMOTE_NO_STATE: SpanRecord = (*ROOT[:4], 0xEF01, True, *ROOT[6:])
BIG_IDS: SpanRecord = ((1 << 128) - 1, (1 << 64) - 1, (1 << 64) - 1)  # type: ignore[assignment]


@pytest.mark.parametrize(
    "records",
    [
        [ROOT, ROOT, CHILD_NO_STATE, CHILD_NO_STATE, REMOTE_NO_STATE, ERROR_NO_TEXT],
        [CHILD_OF_REMOTE, ROOT, CHILD_OF_REMOTE],  # state, events, links: the general way
        [
            (*ROOT[:2], *BIG_IDS, *ROOT[5:]),  # every id's bit set, each byte in place
            (*ROOT[:2], 1, 2, 3, *ROOT[5:]),
            (*ROOT[:8], 1, (1 << 64) - 1, *ROOT[10:]),
        ],
        [(*ROOT[:10], {"x": True}, *ROOT[11:]), (*ROOT[:10], {"x": 1}, *ROOT[11:])],
        [(*ROOT[:10], {"x": 1}, *ROOT[11:]), (*ROOT[:10], {"x": 1.0}, *ROOT[11:])],
        [(*ROOT[:10], {"x": "y"}, *ROOT[11:]), (*ROOT[:10], {"y": "x"}, *ROOT[11:])],
        [
            (*ROOT[:10], {"a": "b", "c": "d"}, *ROOT[11:]),
            (*ROOT[:10], {"c": "d", "a": "b"}, *ROOT[11:]),
        ],
        [(*ROOT[:10], {}, *ROOT[11:]), (*CHILD_NO_STATE[:10], {}, 2, "", (), ())],
        [(*ROOT[:10], {"big": "x" * 20_000}, *ROOT[11:])],  # a span's length of three bytes
        [(*ROOT[:10], ROOT[10], 2, "down", (), ()), (*ROOT[:10], ROOT[10], 2, "up", (), ())],
        [(*ROOT[:1], 3, *ROOT[2:]), (*ROOT[:1], 4, *ROOT[2:]), ("other", *ROOT[1:])],
        [],
    ],
)
def test_a_frame_is_its_spans_one_by_one(records: list[SpanRecord]) -> None:
    """`frame` (the exporting child's way, with a span's constant parts kept by its shape)
    writes the bytes of `span` for each record, joined; shapes that differ only in a value's
    type, the attributes' order, the name, kind or status stay apart; the same twice is the
    same bytes."""
    encoder = Encoder(RESOURCE, SCOPE)
    expected = b"".join(map(encoder.span, records))
    assert encoder.frame(records) == expected
    assert encoder.frame(records) == expected  # the shapes kept: the same bytes again
    theirs = encode_spans([readable(r, RESOURCE, SCOPE) for r in records]).SerializeToString()
    if records:
        assert encoder.message([encoder.frame(records)]) == theirs


def test_schema_urls_and_a_long_message_are_the_sdks_bytes() -> None:
    """The message around the spans (written in one join): with the resource's and the scope's
    schema URLs, and a batch whose lengths take three bytes."""
    resource = Resource({"service.name": "x"}, schema_url="https://opentelemetry.io/schemas/1")
    scope = InstrumentationScope("modelyard.gateway", "1.0", "https://example.com/s")
    records = [ROOT, CHILD_NO_STATE, CHILD_OF_REMOTE] * 400
    encoder = Encoder(resource, scope)
    theirs = encode_spans([readable(r, resource, scope) for r in records]).SerializeToString()
    assert len(theirs) > 1 << 17
    assert encoder.message([encoder.frame(records[:500]), encoder.frame(records[500:])]) == theirs
    assert encoder.encode(records) == theirs
