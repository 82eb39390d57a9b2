"""``edgeseg run DEPLOY.yaml``: every camera of a deployment file at once (``edgeseg.deploy``), ``--check`` to
validate only. Its flags are built from ``deploy.settings.SETTINGS``, the table the file's models take their
keys' descriptions from: a flag sets its key, and the file's validation checks it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import yaml

from ..deploy.settings import SETTINGS, Setting
from ..errors import EdgesegError, first_line


def dest(setting: Setting) -> str:
    return "set_" + setting.key.replace(".", "_")


def add_setting_flags(p: argparse.ArgumentParser) -> None:
    """One flag per shared setting, with that setting's help; a flag not given leaves the file's value."""
    group = p.add_argument_group("settings (each sets the file's key of the same meaning, over the file's value)")
    for s in SETTINGS:
        common = {"dest": dest(s), "default": argparse.SUPPRESS, "help": f"{s.help} [{s.key}]"}
        if s.switch:
            group.add_argument(s.flag, action=argparse.BooleanOptionalAction, **common)
        else:
            metavar = s.key.rpartition(".")[2].upper()
            group.add_argument(s.flag, nargs="+" if s.many else None, metavar=metavar, **common)


def _value(text: str) -> Any:
    """A flag's text as the file would hold it: a number or null as YAML reads it, anything else as written."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)) else text


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    """key path -> value of every setting flag given."""
    found = {}
    for s in SETTINGS:
        if hasattr(args, dest(s)):
            given = getattr(args, dest(s))
            if s.switch or s.text:
                found[s.key] = given
            else:
                found[s.key] = [_value(t) for t in given] if s.many else _value(given)
    return found


def register(sub) -> dict:
    p = sub.add_parser("run", help="every camera of a deployment file (YAML) at once: model, cameras, outputs, live view")
    p.add_argument("file", metavar="DEPLOY.yaml", help="the deployment file (docs/deploy.md); relative paths in it are from its folder")
    p.add_argument(
        "--check",
        action="store_true",
        help="only validate the file and the flags: print what would run and exit 0, or every mistake (one line each) and exit 1",
    )
    add_setting_flags(p)
    return {"run": _cmd_run}


def _cmd_run(args) -> int:
    try:
        from ..deploy import plan
        from ..deploy.load import load_deployment
    except ImportError as exc:
        raise EdgesegError(f'edgeseg run needs the deploy extra: pip install "edgeseg[deploy]" ({first_line(exc)})') from None

    deployment = load_deployment(args.file, overrides=overrides_of(args))
    summary_lines = plan.describe(deployment)  # builds every camera's tracking too: a bad tracker file fails here
    if args.check:
        print("\n".join(summary_lines))
        print(f"{args.file}: ok")
        return 0
    return _run(deployment)


def _run(deployment) -> int:
    from ..deploy import plan
    from ..engines.command import run_cameras
    from ..predict import Segmenter
    from .inference import TRACK_CONF, _report_predict, print_banner, stream_sources, with_view

    stream_sources([str(c.source) for c in deployment.cameras])  # first: the allocator for a run of weeks
    serve = plan.serve_config(deployment)
    seg = Segmenter(
        str(deployment.model.path),
        options=plan.decode_options(deployment, track_conf=TRACK_CONF),
        threads=deployment.model.threads,
        board=plan.board_options(deployment),
    )
    cameras, stream = plan.camera_plans(deployment), plan.stream_options(deployment)
    published = plan.run_outputs(deployment, threshold=seg.options.conf)
    server = None
    if serve is not None:
        from ..serve import start_server

        server = start_server(serve)
        print(f"edgeseg: live view on {server.url} (it stops with the run; Ctrl-C ends both)", file=sys.stderr)
    print_banner(seg, workers=stream.workers, cameras=[c.name or str(c.source) for c in cameras])
    t0 = time.perf_counter()
    try:
        summary = run_cameras(
            seg,
            cameras=cameras,
            stream=stream,
            run_outputs=with_view(server, published),
            show_progress=sys.stderr.isatty(),
        )
    finally:
        if server is not None:
            server.stop()
    return _report_predict(argparse.Namespace(out=None, save_json=None), summary, time.perf_counter() - t0)
