"""The cost of tracing: gateway throughput with tracing off, sampled at 1 % and at 100 %, side
by side in one run.

    python -m loadtests.tracing_bench            # 10 rounds of 3 s a mode and concurrency
    python -m loadtests.tracing_bench --quick    # 2 rounds of 1 s: a smoke run
    python -m loadtests.tracing_bench --out /tmp/tracing-bench.json
    python -m loadtests.tracing_bench --modes off 0% 1% 100%   # other sampling ratios

Three `modelyard serve` processes (all their threads, and their span exporter's process,
pinned to the server CPU) route model `bench` to the
fixed-response nginx upstream of loadtests/gateway_bench.py; wrk (pinned to the other CPU)
POSTs a 200-byte body. The modes differ only in their environment:

- off:  `MODELYARD_TRACING=off` (the plain gateway: no span objects at all);
- 1 %:  `OTEL_EXPORTER_OTLP_ENDPOINT` set (tracing on) and `OTEL_TRACES_SAMPLER_ARG=0.01`;
- 100 %: the same with `OTEL_TRACES_SAMPLER_ARG=1.0`.

Sampled spans really are exported: OTLP/HTTP protobuf through the SDK's batch processor to a
receiver in this process that reads each body and answers 200 without decoding it (so the
export cost is the real one and the receiver's is small). Rounds are interleaved (every mode
once per round, in turn, the order rotated by one each round) so that the machine's noise hits
the modes alike. The report gives each mode's median req/s over the rounds and its spread
(min-max), and its ratio to `off` as the median of the rounds' own ratios (`paired`: each
round's mode over that round's off, loadtests/resampled.paired_ratio) with the middle 90 % of
that median over the rounds resampled: a shared machine drifts by 10-25 % between rounds, which
a ratio of two medians keeps and a round's ratio mostly cancels. At c16 it judges the issue's
targets (1 % >= 0.95, 100 % >= 0.6 of off, `TARGETS`) on that median and says in what share of
the resamples each holds. `ratio_to_off` is still there: median over median. And the spans
each gateway dropped (`modelyard_gateway_spans_dropped_total`: its export queue full).

Then `together`: the same rounds at c16 with every mode at once, each by its own wrk, so the
gateways share the server CPU in the same seconds. On a machine whose speed moves within a
round (seen here: 0 % and 1 % at 0.64-1.18 of off from one 3 s round to the next, rounds one
after the other) that cancels what in-turn rounds cannot: each mode's throughput is its share
of the same CPU, and its ratio to off's is the ratio of their costs a request, upstream
included, as the in-turn ratio is.

It also gives each mode's CPU per request: the user + system time of the gateway's whole
process tree (every thread, and the span exporting child) over a round, from /proc, divided
by the requests wrk counted; and `cpu_vs_off`, off's CPU per request over the mode's. On a
shared machine that is the steadier figure: a neighbour's load moves req/s by 25-40 % but CPU
per request by a few per cent.
Needs wrk and nginx (`apt-get install -y wrk nginx-light`); exit 2 when they are missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import statistics
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from adapters.process_tree import descendants
from loadtests import benchkit, compiled
from loadtests.benchkit import (
    FIXED_LOCATION,
    PACKAGES,
    BenchError,
    Pinning,
    Server,
    Tools,
    cpu_seconds,
    cpu_used,
    find_tools,
    in_turn,
    lua_script,
    nginx,
    say,
    thread_cpu_seconds,
    wrk,
)
from loadtests.gateway_bench import FIXED_RESPONSE, GATEWAY_PATH, MODEL, make_body
from loadtests.resampled import PairedRatio, paired_line, paired_ratio
from loadtests.yard_api import register, wait_served
from modelyard.processes import ModelyardProcess

DEFAULT_OUT: Final = Path(__file__).parent / "results" / "tracing-bench.json"
MODES: Final = ("off", "1%", "100%")  # the default; `--modes` takes any "<ratio>%"
#: The least throughput a mode keeps of off's (issue 23): judged on the paired rounds' median.
TARGETS: Final = {"c16": {"1%": 0.95, "100%": 0.6}}
TOGETHER_AT: Final = 16  # the concurrency of the modes run at the same time (`together`)


@dataclass(frozen=True)
class Config:
    rounds: int
    duration_s: int
    warmup_s: int
    concurrencies: tuple[int, ...]
    build: str = "compiled"  # the gateway as shipped (loadtests/compiled.py) or "python"

    @classmethod
    def full(cls) -> Config:
        return cls(rounds=10, duration_s=3, warmup_s=2, concurrencies=(1, 16))

    @classmethod
    def quick(cls) -> Config:
        return cls(rounds=2, duration_s=1, warmup_s=1, concurrencies=(1, 16))


@contextmanager
def sink(cpu: int | None = None) -> Iterator[tuple[str, list[int]]]:
    """A no-op OTLP/HTTP receiver: reads each export, answers 200 (an empty protobuf answer
    is a valid ExportTraceServiceResponse). Yields its base URL and the bytes received.

    Its threads run on `cpu` (the client's, beside wrk): a collector is not on the gateway's
    core where it is deployed, and reading a 100 % run's exports (several MB/s through
    `http.server`) on the server CPU would be charged to tracing as lost gateway throughput."""
    received = [0, 0]  # exports, bytes

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # the answer leaves in more than one write

        def do_POST(self) -> None:
            size = int(self.headers.get("content-length", "0"))
            self.rfile.read(size)
            received[0] += 1
            received[1] += size
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True

    def serve() -> None:
        if cpu is not None:  # this thread, and the handler threads it starts (they inherit it)
            os.sched_setaffinity(0, {cpu})
        server.serve_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def mode_name(text: str) -> str:
    """A `--modes` word: off, or a sampling ratio in per cent ("1%", "0%", "12.5%")."""
    if text != "off":
        try:
            ratio = float(text.removesuffix("%"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: off or a ratio like 1%") from None
        if not text.endswith("%") or not 0 <= ratio <= 100:
            raise argparse.ArgumentTypeError(f"{text!r}: off or a ratio like 1%")
    return text


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def mode_env(mode: str, otlp_url: str) -> dict[str, str]:
    if mode == "off":
        return {"MODELYARD_TRACING": "off"}
    ratio = str(float(mode.removesuffix("%")) / 100)
    return {
        "MODELYARD_TRACING": "auto",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url,
        "OTEL_TRACES_SAMPLER_ARG": ratio,
    }


@contextmanager
def gateway(
    workdir: Path,
    pin: Pinning,
    upstream: Server,
    env: dict[str, str],
    checkout: Path | None = None,
) -> Iterator[ModelyardProcess]:
    """`modelyard serve` in one tracing mode; `checkout`: run that tree's code (the compiled
    build), as loadtests.gateway_bench.gateway does."""
    token = "bench-" + secrets.token_urlsafe(24)
    proc = ModelyardProcess(
        "serve", workdir, token, extra_env={"MODELYARD_DEPLOYER": "none", **env}, cwd=checkout
    )
    try:
        try:
            proc.start()
            version = register(proc, MODEL, {"endpoint": upstream.url})
            answer = wait_served(proc.url + GATEWAY_PATH, make_body(), version)
            if answer.text != FIXED_RESPONSE:
                raise BenchError(f"the gateway answered {answer.text[:200]!r}")
            assert proc.proc is not None
            # the whole tree: the span exporter's child process shares the gateway's CPU, so
            # the modes compare the CPU each costs, not what a spare core could absorb
            pin.pin_tree(proc.proc.pid)
        except (BenchError, httpx.HTTPError, RuntimeError, TimeoutError) as exc:
            raise BenchError(f"{exc}\n--- gateway log (tail) ---\n{proc.output()}") from exc
        yield proc
    finally:
        proc.stop()


def spans_dropped(base_url: str) -> int:
    """The gateway's `modelyard_gateway_spans_dropped_total` (0 with tracing off)."""
    text = httpx.get(base_url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "modelyard_gateway_spans_dropped":
            return int(family.samples[0].value)
    raise BenchError("no modelyard_gateway_spans_dropped_total on the gateway's /metrics")


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of `pid` and its descendants (the span exporting child)."""
    return cpu_seconds([pid, *descendants(pid)])


#: Where a request's CPU goes, in `cpu_parts`' order.
PARTS: Final = ("event loop", "other threads", "exporting child", "upstream")


def cpu_parts(pid: int, upstream: int) -> tuple[float, float, float, float]:
    """CPU seconds so far, by `PARTS`: the gateway's main thread (its event loop: every
    request, and the spans of the sampled ones), its other threads (the span export thread
    among them: `marshal` and the pipe), its descendants (the exporting child: OTLP encoding
    and the HTTP export) and the upstream's processes (nginx: one more header to read on
    every request tracing is on for). Read around an in-turn round, when one mode has the
    upstream to itself."""
    threads = thread_cpu_seconds(pid)
    main = threads.pop(pid, 0.0)
    child = sum(cpu_seconds(descendants(pid)).values())
    nginx_cpu = sum(cpu_seconds([upstream, *descendants(upstream)]).values())
    return main, sum(threads.values()), child, nginx_cpu


def medians(rounds: list[list[float]]) -> dict[str, float]:
    """Each part's median over the rounds (each round's `parts_used`)."""
    return {part: statistics.median(r[at] for r in rounds) for at, part in enumerate(PARTS)}


def parts_used(before: tuple[float, ...], after: tuple[float, ...], requests: int) -> list[float]:
    """Each part's CPU microseconds a request between two `cpu_parts` readings."""
    return [(b - a) / requests * 1e6 for a, b in zip(before, after, strict=True)]


def together(
    cfg: Config,
    tools: Tools,
    pin: Pinning,
    targets: dict[str, str],
    pids: dict[str, int],
    script: Path,
) -> dict[str, Any]:
    """Every mode at the same time, each driven by its own wrk at c`TOGETHER_AT` (all on the
    client CPU), for `cfg.rounds` rounds: the gateways share the server CPU, turn by turn at
    the scheduler's pace, so whatever slows that CPU for a moment (a neighbour, the
    hypervisor) slows every mode alike, where rounds one after the other can see the machine
    change between two modes. Each mode's throughput (and CPU per request) is its share of
    the same seconds; `paired` is its ratio to off's in the same round."""
    rps: dict[str, list[float]] = {mode: [] for mode in targets}
    cpu: dict[str, list[float]] = {mode: [] for mode in targets}
    with ThreadPoolExecutor(len(targets)) as pool:
        for round_ in range(cfg.rounds):
            before = {mode: tree_cpu(pids[mode]) for mode in targets}
            runs = {
                mode: pool.submit(wrk, tools, pin, url, script, TOGETHER_AT, cfg.duration_s, 1)
                for mode, url in targets.items()
            }
            results = {mode: run.result() for mode, run in runs.items()}
            for mode, result in results.items():
                used = cpu_used(before[mode], tree_cpu(pids[mode]))
                rps[mode].append(result.rps)
                cpu[mode].append(used / result.requests * 1e6)
            say(
                f"[together] c{TOGETHER_AT} round {round_ + 1}: "
                + ", ".join(f"{mode} {rps[mode][-1]:,.0f} req/s" for mode in targets)
                + f" (load {load_average()})"
            )
    return summarize(rps, cpu, TARGETS.get(f"c{TOGETHER_AT}", {}))


def summarize(
    rps: dict[str, list[float]], cpu: dict[str, list[float]], targets: dict[str, float]
) -> dict[str, Any]:
    """`cpu`: each round's CPU microseconds a request, by mode. `targets`: the least ratio
    to off a mode should keep (`paired`: the median of the rounds' ratios, and how sure)."""
    off = statistics.median(rps["off"])
    off_cpu = statistics.median(cpu["off"])
    out: dict[str, Any] = {}
    for mode, values in rps.items():
        median = statistics.median(values)
        cpu_median = statistics.median(cpu[mode])
        paired = paired_ratio(values, rps["off"], at_least=targets.get(mode))
        out[mode] = {
            "paired": msgspec.to_builtins(paired),
            "rps_median": round(median, 1),
            "rps_min": round(min(values), 1),
            "rps_max": round(max(values), 1),
            "ratio_to_off": round(median / off, 3) if off else None,
            "rounds": [round(v, 1) for v in values],
            "cpu_us_median": round(cpu_median, 2),
            "cpu_us_min": round(min(cpu[mode]), 2),
            "cpu_us_max": round(max(cpu[mode]), 2),
            "cpu_vs_off": round(off_cpu / cpu_median, 3) if cpu_median else None,
            "cpu_rounds": [round(v, 2) for v in cpu[mode]],
        }
    return out


def run(cfg: Config, tools: Tools, modes: Sequence[str] = MODES) -> dict[str, Any]:
    pin = Pinning.choose(tools.taskset)
    report: dict[str, Any] = {
        "machine": {**benchkit.machine(), "client_cpu": pin.client, "server_cpu": pin.server},
        "config": asdict(cfg),
        "results": {},
        "cpu_parts": {},  # level -> mode -> part -> median CPU us a request (in turn)
    }
    with (
        tempfile.TemporaryDirectory(prefix="modelyard-tracing-bench-") as tmp,
        ExitStack() as stack,
    ):
        work = Path(tmp)
        otlp_url, received = stack.enter_context(sink(pin.client))
        upstream = stack.enter_context(
            nginx(tools, pin, work / "upstream", FIXED_LOCATION.format(body=FIXED_RESPONSE))
        )
        targets: dict[str, str] = {}
        yards: dict[str, str] = {}
        pids: dict[str, int] = {}
        checkout = compiled.build() if cfg.build == "compiled" else None
        for i, mode in enumerate(modes):
            say(f"[{mode}] starting modelyard serve ({cfg.build})")
            yard = stack.enter_context(
                gateway(work / f"yard{i}", pin, upstream, mode_env(mode, otlp_url), checkout)
            )
            targets[mode] = yard.url + GATEWAY_PATH
            yards[mode] = yard.url
            assert yard.proc is not None
            pids[mode] = yard.proc.pid
        script = lua_script(work / "post.lua", make_body())
        for url in targets.values():  # warm-up
            wrk(tools, pin, url, script, max(cfg.concurrencies), cfg.warmup_s, 1)
        for connections in cfg.concurrencies:
            rps: dict[str, list[float]] = {mode: [] for mode in modes}
            cpu: dict[str, list[float]] = {mode: [] for mode in modes}
            parts: dict[str, list[list[float]]] = {mode: [] for mode in modes}
            for round_ in range(cfg.rounds):
                for mode in in_turn(modes, round_):
                    url = targets[mode]
                    before = cpu_parts(pids[mode], upstream.pid)
                    result = wrk(tools, pin, url, script, connections, cfg.duration_s, 1)
                    used = parts_used(before, cpu_parts(pids[mode], upstream.pid), result.requests)
                    rps[mode].append(result.rps)
                    cpu[mode].append(sum(used[:3]))  # the gateway's tree: all but the upstream
                    parts[mode].append(used)
                    say(
                        f"[{mode}] c{connections} round {round_ + 1}: {result.rps:,.0f} req/s,"
                        f" {cpu[mode][-1]:.1f} us CPU a request (load {load_average()})"
                    )
            level = f"c{connections}"
            report["results"][level] = summarize(rps, cpu, TARGETS.get(level, {}))
            report["cpu_parts"][level] = {mode: medians(rounds) for mode, rounds in parts.items()}
        level = f"c{TOGETHER_AT}"
        report["together"] = {level: together(cfg, tools, pin, targets, pids, script)}
        report["exported"] = {"requests": received[0], "bytes": received[1]}
        report["load_average"] = load_average()
        # spans the gateways' bounded export queues dropped (a fast 100 % that dropped most
        # of its spans would not be a fair figure)
        report["spans_dropped"] = {mode: spans_dropped(yards[mode]) for mode in modes}
    return report


def table(results: dict[str, Any]) -> str:
    lines = [
        "| concurrency | tracing | req/s (median) | min-max | vs off (rounds' median) |"
        " 90 % of resamples | CPU us a request (median) | min-max | off's CPU / this |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for level, modes in results.items():
        for mode, r in modes.items():
            paired = r["paired"]
            lines.append(
                f"| {level} | {mode} | {r['rps_median']:,.0f} |"
                f" {r['rps_min']:,.0f}-{r['rps_max']:,.0f} | {paired['median']:.3f} |"
                f" {paired['low']:.3f}-{paired['high']:.3f} |"
                f" {r['cpu_us_median']:.1f} | {r['cpu_us_min']:.1f}-{r['cpu_us_max']:.1f} |"
                f" {r['cpu_vs_off']:.2f} |"
            )
    return "\n".join(lines)


def parts_table(cpu_parts: dict[str, Any]) -> str:
    """Where each mode's CPU a request goes (in-turn rounds' medians), and its increase over
    off's, part by part."""
    lines = [
        "| concurrency | tracing | " + " | ".join(PARTS) + " | all |",
        "|---|---|" + "---|" * (len(PARTS) + 1),
    ]
    for level, modes in cpu_parts.items():
        off = modes["off"]
        for mode, parts in modes.items():
            cells = [
                f"{parts[p]:.2f}" + ("" if mode == "off" else f" ({parts[p] - off[p]:+.2f})")
                for p in PARTS
            ]
            total = sum(parts.values())
            added = "" if mode == "off" else f" ({total - sum(off.values()):+.2f})"
            lines.append(f"| {level} | {mode} | " + " | ".join(cells) + f" | {total:.2f}{added} |")
    return "\n".join(lines)


def verdicts(results: dict[str, Any]) -> list[str]:
    """Each mode's paired ratio to off, with its target where it has one."""
    lines = []
    for level, modes in results.items():
        for mode, r in modes.items():
            if mode != "off":
                paired = msgspec.convert(r["paired"], PairedRatio)
                lines.append(paired_line(f"{level} {mode} vs off", paired))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.tracing_bench")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    parser.add_argument(
        "--modes",
        nargs="+",
        type=mode_name,
        default=list(MODES),
        help='"off" and sampling ratios such as "1%%" (default: off 1%% 100%%)',
    )
    parser.add_argument(
        "--build",
        choices=("compiled", "python"),
        default="compiled",
        help="the gateway as shipped, its hot path compiled (loadtests/compiled.py), or this"
        " tree's Python",
    )
    args = parser.parse_args(argv)
    if "off" not in args.modes:
        parser.error("--modes needs off (the ratios are to it)")
    tools = find_tools()
    if isinstance(tools, list):
        packages = " ".join(PACKAGES[name] for name in tools)
        say(f"missing: {', '.join(tools)}. Install with: apt-get install -y {packages}")
        return 2
    try:
        cfg = Config.quick() if args.quick else Config.full()
        report = run(dataclasses.replace(cfg, build=args.build), tools, args.modes)
    except BenchError as exc:
        say(f"FAILED: {exc}")
        return 1
    benchkit.write_report(args.out, report)
    print(f"the gateway: {args.build}")
    print(table(report["results"]))
    print("\nwhere the CPU goes, in us a request (in turn; medians; against off):")
    print(parts_table(report["cpu_parts"]))
    print("\nthe rounds' ratios to off (each round ran every mode in turn):")
    print("\n".join(verdicts(report["results"])))
    print(f"\nall modes at the same time, each by its own wrk at c{TOGETHER_AT}:")
    print(table(report["together"]))
    print("\n".join(verdicts(report["together"])))
    print(
        f"\nspans exported: {report['exported']['requests']} requests,"
        f" {report['exported']['bytes']:,} bytes; dropped (queue full):"
        f" {', '.join(f'{m} {n:,}' for m, n in report['spans_dropped'].items())}"
    )
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
