"""The gRPC server's pure layers: HTTP/2 frames (gateway/grpc/h2frames.py) and HPACK decoding
(gateway/grpc/hpack_decode.py), checked against the `hpack` package's encoder and decoder."""

from __future__ import annotations

import hpack
import pytest

from gateway.grpc import h2frames as f
from gateway.grpc.hpack_decode import DecodeError, Decoder, ListTooLarge


def parsed(data: bytes, max_size: int = f.DEFAULT_FRAME_SIZE) -> tuple[int, int, int, bytes]:
    found = f.parse_frame(data, 0, max_size)
    assert found is not None
    kind, flags, stream, payload, end = found
    assert end == len(data)
    return kind, flags, stream, payload


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (f.settings([(f.INITIAL_WINDOW_SIZE, 1 << 20)]), (f.SETTINGS, 0, 0)),
        (f.SETTINGS_ACK, (f.SETTINGS, f.ACK, 0)),
        (f.ping_ack(b"12345678"), (f.PING, f.ACK, 0)),
        (f.window_update(3, 1000), (f.WINDOW_UPDATE, 0, 3)),
        (f.rst_stream(5, f.REFUSED_STREAM), (f.RST_STREAM, 0, 5)),
        (f.goaway(7, f.PROTOCOL_ERROR, b"why"), (f.GOAWAY, 0, 0)),
        (f.frame(f.DATA, f.END_STREAM, 1, b"x" * 300), (f.DATA, f.END_STREAM, 1)),
    ],
)
def test_every_frame_we_send_parses_back(encoded: bytes, expected: tuple[int, int, int]) -> None:
    assert parsed(encoded)[:3] == expected


def test_payloads_round_trip() -> None:
    assert f.parse_settings(parsed(f.settings([(4, 70_000), (5, 20_000)]))[3]) == [
        (4, 70_000),
        (5, 20_000),
    ]
    assert f.parse_u32(parsed(f.window_update(1, 12345))[3], "WINDOW_UPDATE") == 12345
    assert f.parse_u32(parsed(f.rst_stream(1, f.CANCEL))[3], "RST_STREAM") == f.CANCEL
    payload = parsed(f.goaway(9, f.NO_ERROR, b"bye"))[3]
    assert payload == b"\x00\x00\x00\x09\x00\x00\x00\x00bye"
    assert parsed(f.ping_ack(b"abcdefgh"))[3] == b"abcdefgh"


def test_a_frame_is_awaited_until_whole_and_parsed_at_an_offset() -> None:
    two = f.window_update(1, 1) + f.frame(f.DATA, 0, 1, b"hello")
    first = f.parse_frame(two, 0, f.DEFAULT_FRAME_SIZE)
    assert first is not None and first[4] == 13
    second = f.parse_frame(two, first[4], f.DEFAULT_FRAME_SIZE)
    assert second is not None and second[3] == b"hello"
    for cut in range(13):
        assert f.parse_frame(two[:cut], 0, f.DEFAULT_FRAME_SIZE) is None
    for cut in range(13, len(two)):
        assert f.parse_frame(two[:cut], 13, f.DEFAULT_FRAME_SIZE) is None


def test_a_frame_over_the_size_limit_is_refused_from_its_header_alone() -> None:
    header = f.frame(f.DATA, 0, 1, b"x" * (f.DEFAULT_FRAME_SIZE + 1))[: f.HEADER_SIZE]
    with pytest.raises(f.FrameError) as caught:
        f.parse_frame(header, 0, f.DEFAULT_FRAME_SIZE)
    assert caught.value.code == f.FRAME_SIZE_ERROR


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: f.parse_settings(b"\x00\x04\x00\x00\x00"), f.FRAME_SIZE_ERROR),
        (lambda: f.parse_u32(b"\x00\x00\x01", "WINDOW_UPDATE"), f.FRAME_SIZE_ERROR),
        (lambda: f.parse_u32(b"\x00\x00\x00\x01\x00", "RST_STREAM"), f.FRAME_SIZE_ERROR),
        (lambda: f.unpad(f.PADDED, b"\x05abc"), f.PROTOCOL_ERROR),
        (lambda: f.unpad(f.PADDED, b""), f.PROTOCOL_ERROR),
    ],
)
def test_bad_lengths_are_frame_errors(call: object, code: int) -> None:
    with pytest.raises(f.FrameError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.code == code


def test_padding_is_removed() -> None:
    assert f.unpad(f.PADDED, b"\x02abc\x00\x00") == b"abc"
    assert f.unpad(0, b"\x02abc") == b"\x02abc"


def test_large_payloads_are_split_into_frames_of_the_peers_size() -> None:
    frames = f.data_frames(3, b"y" * 40_000, 16_384, end=True)
    assert [len(parsed(one)[3]) for one in frames] == [16_384, 16_384, 7_232]
    assert [parsed(one)[1] for one in frames] == [0, 0, f.END_STREAM]
    block = f.trailers(0, "", [(b"x-long", b"v" * 40_000)])
    data = f.header_frames(1, block, 16_384, end=True)
    kinds, at, joined = [], 0, b""
    while at < len(data):
        found = f.parse_frame(data, at, 16_384)
        assert found is not None
        kinds.append((found[0], found[1]))
        joined += found[3]
        at = found[4]
    assert kinds == [
        (f.HEADERS, f.END_STREAM),
        (f.CONTINUATION, 0),
        (f.CONTINUATION, f.END_HEADERS),
    ]
    assert joined == block


def test_our_header_blocks_decode_with_a_standard_hpack_decoder() -> None:
    head = hpack.Decoder().decode(f.RESPONSE_HEAD, raw=True)
    assert head == [(b":status", b"200"), (b"content-type", b"application/grpc")]
    message = "bad input: 100% wrong, naïve\n"
    block = f.trailers(3, message, [(b"x-modelyard-model", b"iris")])
    assert hpack.Decoder().decode(block, raw=True) == [
        (b"grpc-status", b"3"),
        (b"grpc-message", b"bad input: 100%25 wrong, na%C3%AFve%0A"),
        (b"x-modelyard-model", b"iris"),
    ]
    assert hpack.Decoder().decode(f.status_head(415), raw=True) == [(b":status", b"415")]
    assert f.ok_trailers([(b"a", b"1")]) == f.trailers(0, "", [(b"a", b"1")])
    long_name = b"n" * 300  # lengths over a prefix's limit take more bytes
    assert hpack.Decoder().decode(f.literal(long_name, b"v" * 200), raw=True) == [
        (long_name, b"v" * 200)
    ]


def test_grpc_timeout_units() -> None:
    assert f.parse_timeout(b"100m") == pytest.approx(0.1)
    assert f.parse_timeout(b"2S") == 2.0
    assert f.parse_timeout(b"1H") == 3600.0
    assert f.parse_timeout(b"5000u") == pytest.approx(0.005)
    for bad in (b"", b"m", b"123456789m", b"10x", b"-1S"):
        assert f.parse_timeout(bad) is None


# --- HPACK decoding --------------------------------------------------------------------------


def test_decoding_follows_a_standard_encoder_over_many_blocks() -> None:
    encoder, ours, theirs = hpack.Encoder(), Decoder(65_536), hpack.Decoder()
    blocks = [
        [(":method", "POST"), (":path", "/inference.GRPCInferenceService/ModelInfer")],
        [(":method", "POST"), ("x-user", "alice"), ("grpc-timeout", "100m")],
        [("x-user", "bob"), ("x-big", "z" * 3000)],  # evicts entries from the table
        [("x-user", "alice"), (":path", "/inference.GRPCInferenceService/ModelInfer")],
    ]
    for headers in blocks * 3:
        data = encoder.encode(headers)
        assert ours.decode(data) == theirs.decode(data, raw=True)
    encoder.header_table_size = 100  # a size update at the start of the next block
    data = encoder.encode([("x-after", "resize")])
    assert ours.decode(data) == theirs.decode(data, raw=True) == [(b"x-after", b"resize")]
    assert ours.table_size <= 100


def test_never_indexed_and_uncompressed_literals() -> None:
    encoder = hpack.Encoder()
    data = encoder.encode([("secret", "s3cr3t", True)], huffman=False)  # never indexed
    assert Decoder(1000).decode(data) == [(b"secret", b"s3cr3t")]


def test_a_repeated_block_is_decoded_again_once_the_table_changed() -> None:
    decoder = Decoder(65_536)
    first = hpack.Encoder()
    block = b"\xbe"  # dynamic index 62: the newest entry
    decoder.decode(first.encode([("x-a", "1")]))
    assert decoder.decode(block) == [(b"x-a", b"1")]
    decoder.decode(b"\x40\x03x-b\x012")  # a literal with indexing: x-b 2 is now index 62
    assert decoder.decode(block) == [(b"x-b", b"2")]


def test_a_blocks_memo_lives_with_its_cache_entry_and_not_past_a_table_change() -> None:
    """The call head gateway.grpc.calls parses is kept on the block the decoder caches (not
    in a cache of the reader's keyed by the list's id(), which could alias once it is freed)."""
    decoder = Decoder(65_536)
    block = b"\xbe"
    decoder.decode(b"\x40\x03x-a\x011")
    first = decoder.decode_block(block)
    assert first.memo is None
    first.memo = "parsed"
    again = decoder.decode_block(block)
    assert again is first and again.memo == "parsed"
    decoder.decode(b"\x40\x03x-b\x012")
    changed = decoder.decode_block(block)
    assert changed is not first and changed.memo is None
    assert changed.headers == [(b"x-b", b"2")]
    assert decoder.decode_block(block) is changed


@pytest.mark.parametrize(
    "data",
    [
        b"\x80",  # index 0
        b"\xff\x00",  # an index past both tables
        b"\xbe",  # the dynamic table is empty
        b"\x00\x05ab",  # a name longer than its block
        b"\x00\x81\xff",  # Huffman code with EOS
        b"\xff\xff\xff\xff\xff\xff",  # an integer cut short / too large
        b"\x3f\xe2\x1f",  # a table size update to 4097
        b"\x82\x20",  # a table size update after a header
        b"\x00",  # a literal without its name
    ],
)
def test_hostile_blocks_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Decoder(65_536).decode(data)


def test_a_header_list_over_the_limit_is_refused() -> None:
    data = hpack.Encoder().encode([("x-big", "v" * 2000)])
    with pytest.raises(ListTooLarge):
        Decoder(1000).decode(data)
