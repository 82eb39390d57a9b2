"""What the commands share: argument types and the option groups declared once (decode options, threads,
calibration images, Ray), and how skipped items are printed."""

from __future__ import annotations

import argparse
import sys

from ..address import ASCII_INTEGER, parse_host_optional_port, parse_host_port
from ..errors import EdgesegError


def positive_multiple_of_32(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"imgsz must be an integer, got {text!r}") from None
    if value <= 0 or value % 32:
        raise argparse.ArgumentTypeError(f"imgsz must be a positive multiple of 32, got {value}")
    return value


def unit_interval(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not 0 <= value <= 1:
            raise argparse.ArgumentTypeError(f"{name} must be between 0 and 1, got {value}")
        return value

    return parse


def int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum`` (argparse prefixes the option's name to the message)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def per_core_count(what: str):
    """argparse type: an integer from 1 to ``PER_CORE_LIMIT`` per usable core of this machine (``what`` names
    the unit: each one is a loaded model, so past that they only add memory)."""

    def parse(text: str) -> int:
        from ..engines.base import PER_CORE_LIMIT
        from ..machine import usable_cores

        if not ASCII_INTEGER.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
        value, cores = int(text), usable_cores() or 1
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
        if value > PER_CORE_LIMIT * cores:
            raise argparse.ArgumentTypeError(
                f"at most {PER_CORE_LIMIT * cores} ({PER_CORE_LIMIT} per core, {cores} core(s) here): each of the {what} "
                f"loads its own model, so more only add memory, not speed; got {value}"
            )
        return value

    return parse


def serve_address(text: str) -> tuple[str, int]:
    """argparse type of ``--serve [HOST:]PORT`` (host default: loopback)."""
    from ..serve.config import DEFAULT_HOST

    try:
        return parse_host_port(text, default_host=DEFAULT_HOST)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT (e.g. 8080 or 0.0.0.0:8080): {exc}") from None


def ray_address(text: str) -> str:
    """argparse type of ``--ray-address``: ``auto`` or ``HOST:PORT`` (``ray://HOST:PORT``), checked, as given."""
    if text in ("auto", "local"):
        return text
    try:
        parse_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 127.0.0.1:6379) or auto: {exc}") from None
    return text.strip()


def add_decode_options(p: argparse.ArgumentParser, conf: float = 0.25, filters: bool = True) -> None:
    """The decode options (``DecodeOptions``), declared here once for every command that decodes."""
    p.add_argument("--conf", type=unit_interval("conf"), default=conf, help=f"score threshold (default {conf})")
    p.add_argument("--iou", type=unit_interval("iou"), default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--max-det", type=positive_int, default=300, help="detections kept per image (default 300)")
    if filters:
        p.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
        p.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")


def add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=non_negative_int, default=0, help="ONNX Runtime intra-op threads (0 = ORT default)")


def add_head_option(p: argparse.ArgumentParser) -> None:
    """--head: which head convs an end-to-end model (YOLO26-seg) is exported with (``export.HEADS``)."""
    p.add_argument(
        "--head",
        choices=("one2one", "one2many"),
        default=None,
        help="YOLO26-seg: one2one (default; NMS-free, Ultralytics' nms=False) or one2many (decoded with NMS, "
        "Ultralytics' default); other models have only one2many",
    )


def decode_options(args, multi_label: bool = False, keep_empty_masks: bool = False):
    """The ``DecodeOptions`` of parsed decode options (``multi_label`` and ``keep_empty_masks``: the command's own)."""
    from ..decode import DecodeOptions

    return DecodeOptions(
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        classes=getattr(args, "classes", None),
        agnostic=getattr(args, "agnostic", False),
        multi_label=multi_label,
        keep_empty_masks=keep_empty_masks,
    )


def add_board_options(p: argparse.ArgumentParser, inputs: bool = True) -> None:
    """How a Horizon .bin runs on the RDK board (``BoardOptions``), and its own inputs, declared once."""
    p.add_argument(
        "--runtime",
        choices=["auto", "hbm", "pyeasy"],
        default="auto",
        help=".bin models: the board runtime (auto: hbm_runtime where it imports, RDK OS >= 3.5; else pyeasy_dnn)",
    )
    p.add_argument(
        "--bpu-core",
        type=int_in_range("--bpu-core", 0, 3),
        default=None,
        metavar="N",
        help=".bin models: run on this BPU core (default: any)",
    )
    p.add_argument(
        "--priority",
        type=int_in_range("--priority", 0, 255),
        default=None,
        metavar="P",
        help=".bin models: BPU task priority 0..255 (default: the runtime's)",
    )
    if inputs:
        p.add_argument(
            "--hw-decode",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="decode H.264/H.265/MJPEG videos and streams with the RDK board's hardware decoder to NV12 "
            "(default: on where the board's library imports)",
        )


def int_in_range(name: str, low: int, high: int):
    def parse(text: str) -> int:
        if not text.strip().lstrip("-").isascii() or not text.strip().lstrip("-").isdigit():
            raise argparse.ArgumentTypeError(f"{name} takes an integer {low}..{high}, got {text!r}")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} takes an integer {low}..{high}, got {value}")
        return value

    return parse


def board_options(args):
    """The ``BoardOptions`` of parsed board options."""
    from ..backends import BoardOptions

    return BoardOptions(runtime=args.runtime, bpu_core=args.bpu_core, priority=args.priority)


def add_calibration_options(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("model", help="edgeseg float .onnx (from `edgeseg export`)")
    p.add_argument("--calib", required=True, help="directory of calibration images (letterboxed like inference)")
    p.add_argument("--num", type=positive_int, default=50, help=f"calibration images to {verb} (default 50)")


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """--ray and its options (``edgeseg.engines.cluster``), declared once for predict and val."""
    p.add_argument(
        "--ray",
        action="store_true",
        help='predict on Ray: a local Ray with this machine\'s cores, or the cluster at --ray-address (pip install "edgeseg[ray]")',
    )
    p.add_argument(
        "--ray-address",
        type=ray_address,
        default=None,
        metavar="ADDRESS",
        help="with --ray: the cluster's head as HOST:PORT (what `ray start --head` prints), or auto on a node of it",
    )
    p.add_argument(
        "--actors",
        type=positive_int,
        default=None,
        help="with --ray: models loaded at once, one per actor (default: one per CPU of the cluster; at most 4 per CPU of the cluster)",
    )


def thread_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"threads must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"threads must be positive integers, got {text!r}")
    return values


def print_failures(failed) -> None:
    if failed:
        print(f"skipped {len(failed)} item(s):", file=sys.stderr)
        for src, problem in failed:
            print(f"  {src}: {problem}", file=sys.stderr)


def ray_config_of(args, local_only: dict[str, object]):
    """The ``RayConfig`` of --ray, --ray-address and --actors (None without --ray), after refusing the
    options given in ``local_only`` (option -> its value; set means given) that only work without Ray."""
    if not args.ray:
        given = {"--ray-address": args.ray_address, "--actors": args.actors, "--save-parquet": getattr(args, "save_parquet", None)}
        for option, value in given.items():
            if value is not None:
                raise EdgesegError(f"{option} needs --ray")
        return None
    for option, value in local_only.items():
        if value:
            raise EdgesegError(f"{option} does not work with --ray (it runs here only); drop one of them")
    from ..engines.cluster import RayConfig, actor_cpus, import_ray
    from ..machine import usable_cores

    if args.actors is not None and args.ray_address is None:  # a local Ray gets this machine's cores: check before it starts
        actor_cpus(args.actors, usable_cores() or 1)
    import_ray()  # without Ray installed: the one-line install hint, before any work
    return RayConfig(address=args.ray_address, actors=args.actors)


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    """--track and what goes with it (``edgeseg.tracking``), declared once."""
    p.add_argument(
        "--track",
        action="store_true",
        help="give objects ids that persist from frame to frame (ByteTrack; decodes down to --conf 0.1 unless given, "
        "as `yolo track` does); the images of a source are one sorted sequence",
    )
    p.add_argument(
        "--tracker",
        default="bytetrack",
        metavar="bytetrack|FILE.yaml",
        help="with --track: the tracker, or an Ultralytics-style tracker yaml with its settings (default bytetrack)",
    )
    p.add_argument(
        "--track-iou",
        choices=("box", "mask"),
        default=None,
        help="with --track: associate by box IoU (default) or by box and mask IoU together",
    )
    p.add_argument(
        "--line",
        action="append",
        default=[],
        metavar="NAME=x1,y1,x2,y2",
        help="with --track: count tracks crossing this line, once each, in/out (pixels or 0..1 fractions); repeatable",
    )
    p.add_argument(
        "--zone",
        action="append",
        default=[],
        metavar="NAME=x1,y1,x2,y2,x3,y3,...",
        help="with --track: count tracks entering and leaving this polygon, and those inside per class; repeatable",
    )
    p.add_argument("--save-counts", default=None, metavar="FILE.json", help="with --track: write the final line and zone counts here")


def tracking_options_of(args):
    """The ``TrackingOptions`` of --track and its options (None without --track); bad values are one-line
    errors before any work."""
    if not args.track:
        for option, value in (
            ("--line", args.line),
            ("--zone", args.zone),
            ("--save-counts", args.save_counts),
            ("--track-iou", args.track_iou),
            ("--tracker", args.tracker != "bytetrack"),
        ):
            if value:
                raise EdgesegError(f"{option} needs --track (counting and association work on tracks)")
        return None
    from ..tracking import TRACKERS, TrackerConfig, TrackingOptions, parse_line, parse_zone

    overrides = {"iou": args.track_iou} if args.track_iou else {}
    if args.tracker in TRACKERS:
        config = TrackerConfig(**overrides)
    elif args.tracker.endswith((".yaml", ".yml")):
        config = TrackerConfig.from_yaml(args.tracker, **overrides)
    else:
        raise EdgesegError(f"--tracker {args.tracker}: expected one of {', '.join(TRACKERS)} or a tracker .yaml file")
    lines = tuple(parse_line(text) for text in args.line)
    zones = tuple(parse_zone(text) for text in args.zone)
    return TrackingOptions(tracker=config, lines=lines, zones=zones)


def add_ros_options(p: argparse.ArgumentParser) -> None:
    """--ros, --save-bag and what goes with them (``edgeseg.outputs.ros``), declared once."""
    p.add_argument(
        "--ros",
        action="store_true",
        help="publish each frame's results on ROS 2 topics as the run goes (rclpy where it imports, e.g. on a TROS board; "
        'else cyclonedds: pip install "edgeseg[ros-dds]", x86 only); domain from ROS_DOMAIN_ID',
    )
    p.add_argument(
        "--save-bag",
        default=None,
        metavar="DIR",
        help="a ROS 2 bag in the new folder DIR (rosbag2 version 8, which Humble reads) of every frame's messages: "
        "ai_msgs (TROS), vision_msgs, Foxglove annotations, events and counts (needs the ros extra; docs/ros2.md)",
    )
    p.add_argument("--bag-storage", choices=("mcap", "sqlite3"), default="mcap", help="with --save-bag: the bag's storage (default mcap)")
    p.add_argument(
        "--ros-namespace",
        default=None,
        metavar="NS",
        help="with --ros/--save-bag: put the topics under NS (default: the root for one camera, /<camera> for each of several)",
    )
    p.add_argument(
        "--ros-image",
        action="store_true",
        help="with --ros/--save-bag: also each frame as sensor_msgs/CompressedImage (JPEG) on image/compressed, what TROS's web "
        "display and Foxglove pair the results with",
    )
    p.add_argument(
        "--ros-instance-mask",
        action="store_true",
        help="with --ros/--save-bag: also a mono16 instance image per frame on instance_mask (pixel = 1 + the object's index)",
    )


def ros_outputs_of(args, threshold: float) -> list:
    """The run outputs of --ros and --save-bag (empty without them); a bad namespace or an existing bag folder is one
    line before any work. ``threshold``: the run's confidence threshold (LabelInfo's)."""
    if not (args.ros or args.save_bag):
        given = {"--ros-namespace": args.ros_namespace, "--ros-image": args.ros_image, "--ros-instance-mask": args.ros_instance_mask}
        for option, value in given.items():
            if value:
                raise EdgesegError(f"{option} needs --ros or --save-bag")
        return []
    if args.bag_storage != "mcap" and not args.save_bag:
        raise EdgesegError("--bag-storage needs --save-bag")
    from ..outputs.ros import ros_outputs

    topics = ros_topics_of(args, threshold=threshold)
    return ros_outputs(topics=topics, bag=args.save_bag or None, storage=args.bag_storage, publish=args.ros)


def ros_topics_of(args, threshold: float):
    """The ``RosTopics`` of --ros-namespace, --ros-image, --ros-instance-mask (``LabelInfo.threshold`` = ``threshold``,
    the run's --conf)."""
    from ..outputs.ros.messages import RosTopics

    return RosTopics(namespace=args.ros_namespace, instance_mask=args.ros_instance_mask, image=args.ros_image, threshold=threshold)


def mqtt_address(text: str) -> tuple[str, int]:
    """argparse type of ``--mqtt HOST[:PORT]`` (port default 1883)."""
    from ..outputs.mqtt.config import DEFAULT_PORT

    try:
        return parse_host_optional_port(text, default_port=DEFAULT_PORT)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected HOST[:PORT] (e.g. broker.local or 127.0.0.1:1883): {exc}") from None


def add_mqtt_options(p: argparse.ArgumentParser) -> None:
    """--mqtt and what goes with it (``outputs.mqtt.MqttConfig``, docs/mqtt.md), declared once."""
    p.add_argument(
        "--mqtt",
        type=mqtt_address,
        default=None,
        metavar="HOST[:PORT]",
        help="publish events, counts, detections and camera states to this MQTT broker (port default 1883; needs the mqtt extra)",
    )
    p.add_argument("--mqtt-prefix", default=None, metavar="PREFIX", help="with --mqtt: the topics' first levels (default edgeseg)")
    p.add_argument("--mqtt-user", default=None, metavar="NAME", help="with --mqtt: the username to log in with")
    p.add_argument(
        "--mqtt-password-env", default=None, metavar="VAR", help="with --mqtt-user: the password is in this environment variable"
    )
    p.add_argument("--mqtt-password-file", default=None, metavar="FILE", help="with --mqtt-user: the password is this file's first line")
    p.add_argument("--mqtt-tls", action="store_true", help="with --mqtt: TLS, checked against the system's CA certificates")
    p.add_argument("--mqtt-tls-ca", default=None, metavar="CA.pem", help="with --mqtt: TLS, checked against this CA certificate")
    p.add_argument(
        "--mqtt-discovery",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --mqtt: Home Assistant MQTT discovery of each line's and zone's counts (default on)",
    )


def mqtt_output_of(args):
    """The ``MqttOutput`` of --mqtt and its options (None without --mqtt); bad values, and paho-mqtt missing, are
    one-line errors before any work."""
    if args.mqtt is None:
        options = ("prefix", "user", "password_env", "password_file", "tls", "tls_ca")
        for name in (n for n in options if getattr(args, f"mqtt_{n}")):
            raise EdgesegError(f"--mqtt-{name.replace('_', '-')} needs --mqtt")
        return None
    from pathlib import Path

    from ..outputs.mqtt import MqttConfig, MqttOutput
    from ..outputs.mqtt.config import DEFAULT_PREFIX

    host, port = args.mqtt
    config = MqttConfig(
        host=host,
        port=port,
        prefix=args.mqtt_prefix or DEFAULT_PREFIX,
        username=args.mqtt_user,
        password_env=args.mqtt_password_env,
        password_file=None if args.mqtt_password_file is None else Path(args.mqtt_password_file),
        tls=args.mqtt_tls,
        tls_ca=None if args.mqtt_tls_ca is None else Path(args.mqtt_tls_ca),
        discovery=args.mqtt_discovery,
    )
    return MqttOutput(config)
