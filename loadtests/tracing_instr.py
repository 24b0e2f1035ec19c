"""Instructions per request that tracing adds, counted (not timed), on the gateway's real
request path: loadtests/hotpath_profile.py's harness (the fast HTTP protocol, `Gateway.start`
and its callback lane, the pool's HTTP/1.1 connection, fake sockets, uvloop) with tracing off
(its `pinned` leg) and on at ratio 0, 1 and 100 % (`traced0`, `traced1`, `traced100`: the
records handed to a sink that keeps nothing), under callgrind inside the event loop only.
Deterministic (the harness seeds its random bytes), so it needs neither the benchmark lock
nor a quiet machine.

    python -m loadtests.tracing_instr                     # every mode and the child; a table
    python -m loadtests.tracing_instr --modes off 0% 1%   # some of them

Then the exporting child's instructions a span (`--modes child`, in the default run too):
`python -m adapters.span_export` under callgrind, fed batches of 1,024 of the records the
`traced100` leg makes, as the gateway sends them (`span_export.wire`), exporting OTLP/HTTP to
a no-op receiver in this process; 2 and 12 batches, the difference over 10,240 spans. Needs
valgrind; exit 2 without it.
"""

from __future__ import annotations

import argparse
import marshal
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final

from contract.spans import SpanRecord
from loadtests import hotpath_profile as hp

#: tracing's mode -> the hot-path harness's leg
MODES: Final = {"off": "pinned", "0%": "traced0", "1%": "traced1", "100%": "traced100"}
CHILD: Final = "child"
CHILD_BATCHES: Final = (2, 12)  # batches of 1,024 records for the exporting child
VALGRIND: Final = shutil.which("valgrind")


def _records(requests: int) -> list[SpanRecord]:
    """The records `requests` sampled requests make (two spans each)."""
    made: list[SpanRecord] = []
    hp.run("traced100", requests, 0, None, made.append)
    return made


def _child_per_span(out: Path) -> float:
    from adapters.span_export import wire
    from loadtests.tracing_bench import sink

    assert VALGRIND is not None
    records = _records(512 * max(CHILD_BATCHES))
    counts: dict[int, int] = {}
    with sink() as (url, _received):
        for batches in CHILD_BATCHES:
            fed = out / f"wire.{batches}"
            fed.write_bytes(
                b"".join(wire(records[at : at + 1024]) for at in range(0, batches * 1024, 1024))
            )
            with fed.open("rb") as stdin:
                counts[batches] = _callgrind(
                    ["adapters.span_export", "otlp", "modelyard.gateway", "1024"],
                    out / f"cg.child.{batches}",
                    stdin=stdin,
                    env={
                        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
                        "MODELYARD_SPAN_RESOURCE": marshal.dumps({"service.name": "x"}).hex(),
                    },
                )
    few, many = CHILD_BATCHES
    return (counts[many] - counts[few]) / ((many - few) * 1024)


def _callgrind(
    module_args: list[str],
    target: Path,
    *,
    stdin: IO[bytes] | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Instructions of `python -m <module_args>` under callgrind (its summary line), with
    `PYTHONHASHSEED=0` and `env` added to the environment."""
    assert VALGRIND is not None
    subprocess.run(
        [
            VALGRIND,
            "--tool=callgrind",
            f"--callgrind-out-file={target}",
            sys.executable,
            "-m",
            *module_args,
        ],
        stdin=stdin,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
    )
    summary = re.search(rb"^summary: (\d+)", target.read_bytes(), re.M)
    assert summary is not None
    return int(summary.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.tracing_instr")
    parser.add_argument("--keep", type=Path, help="keep the callgrind files in this directory")
    parser.add_argument("--modes", nargs="+", choices=[*MODES, CHILD], default=[*MODES, CHILD])
    args = parser.parse_args(argv)
    if VALGRIND is None:
        print("needs valgrind (apt-get install -y valgrind)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        per = {
            mode: hp.callgrind_per_request(
                MODES[mode], hp.REQUESTS, hp.WARMUP, out / f"cg.{MODES[mode]}", steady=True
            )
            for mode in args.modes
            if mode != CHILD
        }
        child = _child_per_span(out) if CHILD in args.modes else None
    print("| tracing | leg | instructions per request | vs off |")
    print("|---|---|---|---|")
    for mode, value in per.items():
        extra = f"+{value - per['off']:,.0f}" if "off" in per and mode != "off" else "-"
        print(f"| {mode} | {MODES[mode]} | {value:,.0f} | {extra} |")
    if child is not None:
        print(f"\nexporting child: {child:,.0f} instructions a span")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
