"""``edgeseg`` command line: a thin shell over the Python API. Errors are one line unless ``--debug``.

Each command module (``inference.py``, ``tools.py``, ``deploy.py``) registers its parsers and handlers; options that
several commands share are declared once in ``options.py``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from ..errors import EdgesegError
from . import deploy, inference, tools


def _build() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    parser = argparse.ArgumentParser(
        prog="edgeseg", description="YOLO instance segmentation for edge accelerators: export, INT8, fast decode."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = inference.register(sub)
    commands.update(tools.register(sub))
    commands.update(deploy.register(sub))
    return parser, commands


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a run like Ctrl-C: outputs are finalised on the way out


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each line (tests and embedding programs swap it between runs)."""

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_to_stderr() -> None:
    """The ``edgeseg`` logger's lines (a camera's state changes) on stderr, each with its UTC time."""
    logger = logging.getLogger("edgeseg")
    if not logger.handlers:
        handler = _StderrHandler()
        formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ edgeseg: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = _build()
    args = parser.parse_args(argv)
    _log_to_stderr()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return commands[args.command](args)
    except EdgesegError as exc:
        if args.debug:
            raise
        for line in str(exc).splitlines():  # one line per mistake (a deployment file lists all of its own)
            print(f"edgeseg: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgeseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
