"""The command line: `python -m dashapp check | probe`.

Each command is a subparser registered by one `_add_*_command` function in COMMANDS, which sets
`handler` to a function taking the parsed arguments and returning the exit status. Adding a command
means writing one such function and appending it to COMMANDS.

Exit status: 0 when everything is fine, 1 when a probed instance is abnormal, 2 when the
configuration is invalid (argparse also exits with 2 on a bad option).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
import unicodedata
from concurrent.futures import Future, ThreadPoolExecutor, wait

from dashapp.config import Config, ConfigError, InstanceConfig, load_config
from dashapp.i18n import DEFAULT_LANG, LANGS, t
from dashapp.logsetup import configure_logging
from dashapp.model import FailureKind, ProbeResult, Status, to_iso

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ABNORMAL = 1
EXIT_CONFIG_ERROR = 2

DEFAULT_CONFIG = "instances.toml"

# Probes bound themselves by their instance's timeout. The command line waits this much longer
# before it reports a probe that never returned, so a driver that ignores its timeout cannot hang it.
PROBE_GRACE_S = 5.0
MAX_PROBE_THREADS = 32

_COLUMNS = ("name", "type", "address", "status", "latency", "reason")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen command and return its exit status."""
    _force_utf8_output()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_lang_in(argv))
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    try:
        status = args.handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`probe --json | head`). Point stdout at /dev/null so the flush
        # at exit does not raise again, and exit as Python's documentation suggests for EPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return status


def build_parser(lang: str = DEFAULT_LANG) -> argparse.ArgumentParser:
    """Build the parser with one subparser per command, with help text in `lang`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=None, help=t("cli.help.config", lang))
    common.add_argument("--lang", choices=LANGS, default=DEFAULT_LANG, help=t("cli.help.lang", lang))

    parser = argparse.ArgumentParser(prog="python -m dashapp", description=t("cli.description", lang))
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers, common, lang)
    return parser


def _add_check_command(subparsers, common: argparse.ArgumentParser, lang: str) -> None:
    help_text = t("cli.help.check", lang)
    command = subparsers.add_parser("check", parents=[common], help=help_text, description=help_text)
    command.set_defaults(handler=run_check)


def _add_probe_command(subparsers, common: argparse.ArgumentParser, lang: str) -> None:
    help_text = t("cli.help.probe", lang)
    command = subparsers.add_parser("probe", parents=[common], help=help_text, description=help_text)
    command.add_argument("--json", action="store_true", help=t("cli.help.json", lang))
    command.set_defaults(handler=run_probe)


COMMANDS = [_add_check_command, _add_probe_command]


def config_path(args: argparse.Namespace) -> str:
    """Return --config, else $DBMON_CONFIG, else instances.toml in the current directory."""
    return args.config or os.environ.get("DBMON_CONFIG") or DEFAULT_CONFIG


def run_check(args: argparse.Namespace) -> int:
    config = _load_or_report(config_path(args), args.lang)
    if config is None:
        return EXIT_CONFIG_ERROR
    print(t("cli.check.ok", args.lang, path=config_path(args), count=len(config.instances),
            enabled=len(config.enabled_instances())))
    return EXIT_OK


def run_probe(args: argparse.Namespace) -> int:
    config = _load_or_report(config_path(args), args.lang)
    if config is None:
        return EXIT_CONFIG_ERROR

    instances = config.enabled_instances()
    outcomes, unfinished = probe_all(instances, args.lang)
    if args.json:
        print(json.dumps([outcome_to_dict(instance, result) for instance, result in outcomes],
                         ensure_ascii=False, indent=2, default=str))
    else:
        _print_table(outcomes, len(config.instances) - len(instances), args.lang)

    # An instance in maintenance is reported but does not fail the run.
    status = EXIT_OK if all(result.ok or instance.maintenance for instance, result in outcomes) else EXIT_ABNORMAL
    if unfinished:
        # A probe thread that ignored its timeout would keep the interpreter waiting for it at
        # exit. The output is complete, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _load_or_report(path: str, lang: str) -> Config | None:
    """Load the configuration, or print each of its problems to stderr and return None."""
    try:
        return load_config(path)
    except ConfigError as error:
        for message in error.messages(lang):
            print(message, file=sys.stderr)
        print(t("cli.check.failed", lang, path=path, count=len(error.problems)), file=sys.stderr)
        return None


def probe_all(instances: list[InstanceConfig], lang: str = DEFAULT_LANG, create_probe=None,
              grace: float = PROBE_GRACE_S) -> tuple[list[tuple[InstanceConfig, ProbeResult]], int]:
    """Probe every instance once, concurrently, and return the results in configuration order.

    Also returns how many probes had not returned `grace` seconds after the longest timeout:
    each of those is reported as a timeout, and its thread is still running. `create_probe`
    defaults to dashapp.probes.create_probe.
    """
    if not instances:
        return [], 0
    if create_probe is None:
        # Imported here so that `check` works even while a probe module fails to import.
        from dashapp.probes import create_probe

    deadline = max(instance.timeout for instance in instances) + grace
    executor = ThreadPoolExecutor(max_workers=min(MAX_PROBE_THREADS, len(instances)),
                                  thread_name_prefix="probe")
    futures = [executor.submit(_probe_once, create_probe, instance, lang) for instance in instances]
    wait(futures, timeout=deadline)
    executor.shutdown(wait=False, cancel_futures=True)

    outcomes = []
    unfinished = 0
    for instance, future in zip(instances, futures):
        if not future.done():
            unfinished += 1
            log.error("probe of %s did not return within %.1f s", instance.name, deadline)
        outcomes.append((instance, _result_of(future, deadline, lang)))
    return outcomes, unfinished


def _probe_once(create_probe, instance: InstanceConfig, lang: str) -> ProbeResult:
    """Run one probe and close it. An exception becomes a failed result, logged with its traceback."""
    try:
        probe = create_probe(instance)
        try:
            result = probe.check()
        finally:
            probe.close()
    except Exception as error:  # noqa: BLE001 - one broken probe must not hide the other results
        details = _redact("".join(traceback.format_exception(error)), instance.password)
        log.error("probe of %s raised an exception:\n%s", instance.name, details)
        message = _redact(f"{type(error).__name__}: {error}", instance.password)
        return ProbeResult.failed(FailureKind.OTHER, t("cli.probe.raised", lang, error=message))
    # Probes are expected to keep passwords out of reasons. This masks one that slips through.
    if result.reason and instance.password and instance.password in result.reason:
        return ProbeResult(ok=result.ok, checked_at=result.checked_at, latency_ms=result.latency_ms,
                           details=result.details, failure=result.failure,
                           reason=_redact(result.reason, instance.password))
    return result


def _result_of(future: Future, deadline: float, lang: str) -> ProbeResult:
    if future.done():
        return future.result()
    return ProbeResult.failed(FailureKind.TIMEOUT, t("cli.probe.no_return", lang, seconds=f"{deadline:g}"))


def _redact(text: str, secret: str | None) -> str:
    if not secret:
        return text
    return text.replace(secret, "***")


def outcome_to_dict(instance: InstanceConfig, result: ProbeResult) -> dict:
    """Describe one probe outcome for --json. The result contains no credential."""
    return {
        "name": instance.name,
        "key": instance.key,
        "type": instance.type,
        "host": instance.host,
        "port": instance.port,
        "address": format_address(instance.host, instance.port),
        "tags": list(instance.tags),
        "status": _status(instance, result).value,
        "failure": result.failure.value if result.failure else None,
        "reason": result.reason,
        "latency_ms": None if result.latency_ms is None else round(result.latency_ms, 2),
        "checked_at": to_iso(result.checked_at),
        "details": dict(result.details),
    }


def format_address(host: str, port: int) -> str:
    """Join host and port; an IPv6 address goes in brackets, as in a URL."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _print_table(outcomes: list[tuple[InstanceConfig, ProbeResult]], disabled: int, lang: str) -> None:
    if not outcomes:
        print(t("cli.probe.none_enabled", lang))
        return

    header = [t(f"cli.probe.column.{column}", lang) for column in _COLUMNS]
    rows = [_table_row(instance, result, lang) for instance, result in outcomes]
    widths = [max(display_width(row[index]) for row in [header, *rows]) for index in range(len(header))]
    for row in [header, *rows]:
        print(_format_row(row, widths))

    statuses = [_status(instance, result) for instance, result in outcomes]
    print()
    print(t("cli.probe.summary", lang, running=statuses.count(Status.RUNNING),
            abnormal=statuses.count(Status.ABNORMAL), maintenance=statuses.count(Status.MAINTENANCE),
            disabled=disabled))


def _status(instance: InstanceConfig, result: ProbeResult) -> Status:
    if instance.maintenance:
        return Status.MAINTENANCE
    return Status.RUNNING if result.ok else Status.ABNORMAL


def _table_row(instance: InstanceConfig, result: ProbeResult, lang: str) -> list[str]:
    status = _status(instance, result)
    latency = "-" if result.latency_ms is None else f"{result.latency_ms:.1f} ms"
    reason = ""
    if not result.ok:
        kind = t(f"failure.{(result.failure or FailureKind.OTHER).value}", lang)
        reason = f"{kind}: {result.reason}" if result.reason else kind
    return [instance.name, instance.type, format_address(instance.host, instance.port),
            t(f"status.{status.value}", lang), latency, reason]


def _format_row(cells: list[str], widths: list[int]) -> str:
    # The last column is not padded, and a row without a reason ends without trailing spaces.
    padded = [cell + " " * (width - display_width(cell)) for cell, width in zip(cells[:-1], widths)]
    return "  ".join([*padded, cells[-1]]).rstrip()


def display_width(text: str) -> int:
    """Count terminal columns: wide East Asian characters and most emoji take two."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _lang_in(argv: list[str]) -> str:
    """Find --lang before parsing, so that --help is printed in that language."""
    for index, arg in enumerate(argv):
        if arg == "--lang" and index + 1 < len(argv) and argv[index + 1] in LANGS:
            return argv[index + 1]
        if arg.startswith("--lang=") and arg.split("=", 1)[1] in LANGS:
            return arg.split("=", 1)[1]
    return DEFAULT_LANG


def _force_utf8_output() -> None:
    """Write UTF-8 whatever the locale: under LC_ALL=C Python may pick ASCII, and a Chinese or
    emoji instance name would raise UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="backslashreplace")
