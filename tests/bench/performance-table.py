#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Regenerates the figures table of docs/performance.md with `tlspyo bench`.

    performance-table.py [--repeat N] [--update docs/performance.md] [--raw FILE] TLSPYO [BENCH OPTION...]
    performance-table.py --load FILE [--update docs/performance.md]

Runs `TLSPYO bench --json` over TLS and over plain TCP, N times each (3 by
default: the table shows the median of each figure), and prints a Markdown
table: our figures side by side with tlspyo's and mosquitto's as quoted in
issue 7, and the targets of issue 7 marked met or not met (judged on the TLS
figure). With several runs, rates and times show the median and, in
parentheses, the lowest and highest run. --raw FILE keeps the bench's JSON
reports, and --load FILE renders the table from them without running. With --update FILE, it replaces the part of FILE between the
markers `<!-- bench-table:begin -->` and `<!-- bench-table:end -->` instead
of printing. Extra options go to every bench run (for example --cases).
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

BEGIN = "<!-- bench-table:begin -->"
END = "<!-- bench-table:end -->"

# Figures quoted from issue 7 ("Why"): tlspyo 0.2 and mosquitto 2.0 on a
# 2-core machine like ours, loopback, TLS unless said otherwise. mosquitto's
# ping-pong is from shared/GIO-TLS-NOTES.md. tlspyo cannot be installed here
# (PyPI is unreachable), so they are not re-measured.
TLSPYO = {
    "produce_rate": "30 000 (45 000 TCP)",
    "broadcast_rate": "45 000",
    "latency_p50": "88 ms",
    "large_1_rate": "105",
    "large_64_rate": "does not arrive within a minute",
    "process_rss": "about 40 MB per process",
}
MOSQUITTO = {
    "produce_rate": "68 000 (QoS 0)",
    "large_1_rate": "326",
    "latency_p50": "151 µs",
}


def run_bench(tlspyo, security, extra):
    command = [tlspyo, "bench", "--json", "--security", security] + extra
    load = os.getloadavg()[0]
    sys.stderr.write(f"running (load average {load:.2f}): " + " ".join(command) + "\n")
    if load > 0.5:
        sys.stderr.write("warning: the machine is busy: the figures will be lower and noisier\n")
    run = subprocess.run(command, stdout=subprocess.PIPE, check=False)
    try:
        report = json.loads(run.stdout)
    except ValueError:
        sys.exit(f"{' '.join(command)} printed no JSON (exit code {run.returncode})")
    report["load_average"] = load
    return report


def case_key(case):
    if case["name"] == "large":
        return f"large_{case['size'] // (1024 * 1024)}"
    return case["name"]


def collect(reports):
    """{case key: {figure: [values...]}, or the errors of the runs that failed}"""
    figures, errors = {}, {}
    for report in reports:
        for case in report["cases"]:
            key = case_key(case)
            if not case.get("ok"):
                errors.setdefault(key, []).append(case.get("error", "failed"))
                continue
            slot = figures.setdefault(key, {})
            for name, value in case.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    slot.setdefault(name, []).append(value)
                elif isinstance(value, dict):
                    for who, v in value.items():
                        if isinstance(v, (int, float)):
                            slot.setdefault(f"{name}.{who}", []).append(v)
    return figures, errors


def median(figures, key, name):
    values = figures.get(key, {}).get(name)
    return statistics.median(values) if values else None


def spread(figures, key, name, fmt):
    """The median, and the range when there are several runs."""
    values = figures.get(key, {}).get(name)
    if not values:
        return fmt(None)
    text = fmt(statistics.median(values))
    if len(values) > 1 and min(values) != max(values):
        text += f" ({fmt(min(values))}–{fmt(max(values))})"
    return text


def peak_ratio(figures, key):
    """The largest (peak - idle) / object size over the processes measured."""
    size = median(figures, key, "size")
    ratios = []
    for who in ("producer", "relay", "consumer"):
        peak = median(figures, key, f"peak_rss_kib.{who}")
        idle = median(figures, key, f"idle_rss_kib.{who}")
        if peak is not None and idle is not None and size:
            ratios.append(((peak - idle) * 1024 / size, who))
    return max(ratios) if ratios else None


def fmt_int(v):
    return "–" if v is None else f"{v:,.0f}".replace(",", " ")


def fmt_us(v):
    if v is None:
        return "–"
    return f"{v / 1000:.1f} ms" if v >= 10000 else f"{v:.0f} µs"


def fmt_ms(v):
    return "–" if v is None else f"{v / 1000:.1f} ms"


def fmt_mib(kib):
    return "–" if kib is None else f"{kib / 1024:.1f} MiB"


def fmt_kib(kib):
    return "–" if kib is None else f"{kib:.0f} KiB"


def verdict(ok):
    if ok is None:
        return "not measured"
    return "met" if ok else "**not met**"


def rows(tls, tcp):
    (ft, et), (fc, ec) = tls, tcp

    def both(key, name, fmt):
        return spread(ft, key, name, fmt), spread(fc, key, name, fmt)

    def failed(key):
        return et.get(key), ec.get(key)

    out = []

    def row(label, key, tls_text, tcp_text, tlspyo="", mosquitto="", target="", ok=None):
        e_tls, e_tcp = failed(key)
        if e_tls:
            tls_text, ok = "FAILED¹", False
        if e_tcp:
            tcp_text = "FAILED¹"
        out.append((label, tls_text, tcp_text, tlspyo, mosquitto, target,
                    verdict(ok) if target else ""))

    def param(key, name, default):
        v = median(ft, key, name)
        return default if v is None else int(v)

    v = median(ft, "produce", "objects_per_s")
    row(f"produce, {param('produce', 'size', 100)} B objects, objects/s", "produce", *both("produce", "objects_per_s", fmt_int),
        TLSPYO["produce_rate"], MOSQUITTO["produce_rate"], "≥ 1 000 000",
        None if v is None else v >= 1e6)
    row("produce, MB/s", "produce", *both("produce", "mb_per_s", fmt_int))
    v = median(ft, "broadcast", "deliveries_per_s")
    row(f"broadcast to {param('broadcast', 'consumers', 4)} consumers, deliveries/s", "broadcast",
        *both("broadcast", "deliveries_per_s", fmt_int), TLSPYO["broadcast_rate"], "",
        "≥ 2 000 000", None if v is None else v >= 2e6)
    v = median(ft, "latency", "p50_us")
    row("latency, round trip p50", "latency", *both("latency", "p50_us", fmt_us),
        TLSPYO["latency_p50"], MOSQUITTO["latency_p50"], "< 200 µs",
        None if v is None else v < 200)
    row("latency, round trip p90", "latency", *both("latency", "p90_us", fmt_us))
    v = median(ft, "latency", "p99_us")
    row("latency, round trip p99", "latency", *both("latency", "p99_us", fmt_us), "", "",
        "< 1 ms", None if v is None else v < 1000)
    for size, label in ((1, "1 MiB"), (64, "64 MiB")):
        key = f"large_{size}"
        v = median(ft, key, "mb_per_s")
        row(f"large {label}, MB/s", key, *both(key, "mb_per_s", fmt_int),
            TLSPYO[f"large_{size}_rate"], MOSQUITTO.get(f"large_{size}_rate", ""),
            "≥ 500", None if v is None else v >= 500)
        pt, pc = peak_ratio(ft, key), peak_ratio(fc, key)
        row(f"large {label}, peak memory above idle", key,
            "–" if pt is None else f"{pt[0]:.1f}x the object ({pt[1]})",
            "–" if pc is None else f"{pc[0]:.1f}x the object ({pc[1]})",
            "", "", "≤ about 3x", None if pt is None else pt[0] <= 3.3)
    v = median(ft, "connect", "cold_us")
    row("connect, start() to first object, first endpoint of a process", "connect",
        *both("connect", "cold_us", fmt_ms), "", "", "≤ 10 ms", None if v is None else v <= 10000)
    row("connect, the same, later endpoints (p50)", "connect", *both("connect", "p50_us", fmt_ms))
    v = median(ft, "fanin", "relay_kib_per_connection")
    row(f"fanin, {param('fanin', 'endpoints', 1000)} idle endpoints: relay memory per connection",
        "fanin",
        *both("fanin", "relay_kib_per_connection", fmt_kib), "", "", "< 100 KiB",
        None if v is None else v < 100)
    def with_anon(figures, name, anon_name):
        text = fmt_mib(median(figures, "fanin", name))
        anon = median(figures, "fanin", anon_name)
        return text if anon is None else f"{text} ({fmt_mib(anon)} not shared)"

    v = median(ft, "fanin", "relay_idle_rss_kib")
    row("idle relay, resident memory", "fanin",
        with_anon(ft, "relay_idle_rss_kib", "relay_idle_anon_kib"),
        with_anon(fc, "relay_idle_rss_kib", "relay_idle_anon_kib"),
        TLSPYO["process_rss"], "", "< 10 MB", None if v is None else v * 1024 < 10e6)
    v = median(ft, "fanin", "endpoint_first_kib")
    row("an endpoint's cost to its process (the first one)", "fanin",
        with_anon(ft, "endpoint_first_kib", "endpoint_first_anon_kib"),
        with_anon(fc, "endpoint_first_kib", "endpoint_first_anon_kib"),
        "", "", "< 2 MB", None if v is None else v * 1024 < 2e6)
    row("each further endpoint in the same process", "fanin",
        *both("fanin", "endpoint_each_kib", fmt_kib))
    return out


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} × {cpu}, Linux {platform.release()}"


def render(tls_reports, tcp_reports, repeat, extra):
    tls, tcp = collect(tls_reports), collect(tcp_reports)
    first = tls_reports[0]
    loads = [r["load_average"] for r in tls_reports + tcp_reports if "load_average" in r]
    load_text = (f" The 1-minute load average before the runs was {min(loads):.2f} to "
                 f"{max(loads):.2f}." if loads else "")
    lines = [
        f"Measured {datetime.date.today().isoformat()} with tlspyo-glib {first['version']}, "
        f"GLib {first['glib']}, on {machine()}; relay in a child process, endpoints in child "
        f"processes, loopback. Median of {repeat} run{'s' if repeat > 1 else ''} of "
        f"`tlspyo bench --json --security tls|none{' ' + ' '.join(extra) if extra else ''}` "
        "(regenerate with `ninja -C _build bench-table`). Targets are judged on the TLS "
        "figure; figures in parentheses are the lowest and highest run." + load_text,
        "",
        "| figure | TLS | TCP | tlspyo (issue 7) | mosquitto (issue 7) | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows(tls, tcp):
        lines.append("| " + " | ".join(r) + " |")
    notes = []
    for name, (_, errors) in (("TLS", tls), ("TCP", tcp)):
        for key, messages in sorted(errors.items()):
            notes.append(f"{name} {key}: {messages[0]}")
    if notes:
        lines.append("")
        lines.append("¹ Failed runs:")
        lines.append("")
        for n in notes:
            lines.append(f"- {n}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--update", metavar="FILE")
    parser.add_argument("--raw", metavar="FILE", help="save the JSON reports in FILE")
    parser.add_argument("--load", metavar="FILE", help="render the reports saved in FILE")
    parser.add_argument("tlspyo", nargs="?")
    parser.add_argument("extra", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    if args.load:
        with open(args.load) as f:
            saved = json.load(f)
        tls, tcp, extra = saved["tls"], saved["none"], saved.get("extra", [])
    else:
        if not args.tlspyo:
            parser.error("give the tlspyo executable, or --load FILE")
        extra = args.extra
        tls = [run_bench(args.tlspyo, "tls", extra) for _ in range(args.repeat)]
        tcp = [run_bench(args.tlspyo, "none", extra) for _ in range(args.repeat)]
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump({"tls": tls, "none": tcp, "extra": extra}, f, indent=1)
    table = render(tls, tcp, len(tls), extra)

    if not args.update:
        sys.stdout.write(table)
        return 0
    with open(args.update) as f:
        text = f.read()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        sys.exit(f"{args.update} has no {BEGIN} … {END} markers")
    text = pattern.sub(lambda m: f"{BEGIN}\n{table}{END}", text, count=1)
    with open(args.update, "w") as f:
        f.write(text)
    sys.stderr.write(f"updated {args.update}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
