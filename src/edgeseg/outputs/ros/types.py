"""The ROS 2 types edgeseg publishes, registered from their ``.msg`` text.

``msg/`` holds the vendored text of ai_msgs (TROS), vision_msgs 4.1.1 and foxglove_msgs, one file per type in a
folder per package (``msg/SOURCES.md`` names each repository, commit and license). std_msgs, sensor_msgs,
geometry_msgs and builtin_interfaces are rosbags' own ROS 2 Humble store. Nothing is hand-written CDR: rosbags
generates each type's serializer from these definitions.

rosbags is an optional extra (``pip install edgeseg[ros]``): it is imported only when a ROS output is asked for.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import EdgesegError

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

MSG_DIR = Path(__file__).with_name("msg")
PACKAGES = ("ai_msgs", "vision_msgs", "foxglove_msgs")  # vendored, in msg/<package>/<Type>.msg


def require_rosbags() -> None:
    """One line, not a traceback, when the optional extra is missing."""
    try:
        import rosbags  # noqa: F401
    except ImportError:
        raise EdgesegError("ROS 2 messages need rosbags: pip install edgeseg[ros]") from None


def vendored_types() -> dict[str, str]:
    """``{"ai_msgs/msg/Roi": its .msg text, ...}`` for every vendored type."""
    return {
        f"{package}/msg/{path.stem}": path.read_text(encoding="utf-8")
        for package in PACKAGES
        for path in sorted((MSG_DIR / package).glob("*.msg"))
    }


@functools.cache
def typestore() -> Typestore:
    """rosbags' ROS 2 Humble typestore with the vendored types registered from their text (built once)."""
    require_rosbags()
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    types: dict = {}
    for name, text in vendored_types().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


@functools.cache
def message_definition(msgtype: str) -> str:
    """The concatenated ROS 2 message definition of ``msgtype`` (its text, then ``MSG: pkg/Type`` for each type
    it uses): what a bag embeds and what ``rosbag2``/``mcap`` readers decode with."""
    text, _ = typestore().generate_msgdef(msgtype, ros_version=2)
    return text
