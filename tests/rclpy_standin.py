"""A stand-in for ``rclpy`` (and the generated message packages of a ROS 2 install), behaving as rclpy's source
does on the humble branch (ros2/rclpy), for the calls edgeseg makes; ``install(monkeypatch, packages)`` puts it in
``sys.modules``. It records what a real node would send: per topic, the message class, the QoS and every
published payload.

What it proves: edgeseg calls rclpy the way rclpy's code accepts (context, node, publisher, QoS, ``bytes`` to
``publish``) and publishes the bag's bytes unchanged on the right topics. What it cannot prove: that the rmw
below (Fast DDS on TROS, Cyclone elsewhere) and a subscriber accept them; that needs a board or a ROS 2 install.
"""

from __future__ import annotations

import enum
import sys
import types
from dataclasses import dataclass, field


class HistoryPolicy(enum.IntEnum):  # rclpy/qos.py HistoryPolicy
    SYSTEM_DEFAULT = 0
    KEEP_LAST = 1
    KEEP_ALL = 2


class ReliabilityPolicy(enum.IntEnum):  # rclpy/qos.py ReliabilityPolicy
    SYSTEM_DEFAULT = 0
    RELIABLE = 1
    BEST_EFFORT = 2


class DurabilityPolicy(enum.IntEnum):  # rclpy/qos.py DurabilityPolicy
    SYSTEM_DEFAULT = 0
    TRANSIENT_LOCAL = 1
    VOLATILE = 2


class QoSProfile:
    """rclpy/qos.py ``QoSProfile.__init__``: only known keywords; KEEP_LAST needs a depth; defaults from
    ``qos_profile_default`` (reliable, volatile)."""

    _KEYS = ("history", "depth", "reliability", "durability", "lifespan", "deadline", "liveliness", "liveliness_lease_duration")

    def __init__(self, **kwargs) -> None:
        assert all(key in self._KEYS for key in kwargs), f"Invalid arguments passed to constructor: {kwargs.keys()!r}"
        if "history" not in kwargs:
            if "depth" not in kwargs:
                raise ValueError("History and/or depth settings are required.")
            kwargs["history"] = HistoryPolicy.KEEP_LAST
        self.history = kwargs["history"]
        if self.history == HistoryPolicy.KEEP_LAST and "depth" not in kwargs:
            raise ValueError("History set to KEEP_LAST without a depth setting.")
        self.depth = kwargs.get("depth", 10)
        self.reliability = kwargs.get("reliability", ReliabilityPolicy.RELIABLE)
        self.durability = kwargs.get("durability", DurabilityPolicy.VOLATILE)


class Duration:  # rclpy/duration.py Duration(*, seconds=0, nanoseconds=0)
    def __init__(self, *, seconds: float = 0, nanoseconds: int = 0) -> None:
        self.nanoseconds = int(seconds * 1e9) + nanoseconds


class Context:
    """rclpy/context.py ``Context``: ``init`` once only; ``ok`` until shut down; ``try_shutdown`` idempotent."""

    def __init__(self) -> None:
        self._state = "new"
        self.args = None

    def init(self, args=None, *, initialize_logging: bool = True, domain_id=None) -> None:
        if self._state != "new":
            raise RuntimeError("Context.init() must only be called once")
        self.args = list(args) if args is not None else list(sys.argv)
        self._state = "ok"

    def ok(self) -> bool:
        return self._state == "ok"

    def try_shutdown(self) -> None:
        if self._state == "ok":
            self._state = "shutdown"


@dataclass
class Publisher:
    """rclpy/publisher.py ``Publisher.publish(msg: Union[MsgType, bytes])``: an instance of the publisher's type
    goes to ``publish``, ``bytes`` to ``publish_raw``, anything else is a TypeError."""

    msg_type: type
    topic: str
    qos_profile: QoSProfile
    raw: list[bytes] = field(default_factory=list)
    destroyed: bool = False
    acked_wait: int | None = None  # the timeout of the last wait_for_all_acked (ns)

    def publish(self, msg) -> None:
        assert not self.destroyed, "publish after destroy"
        if isinstance(msg, self.msg_type):
            raise AssertionError("edgeseg publishes serialised bytes, never a Python message")
        elif isinstance(msg, bytes):
            self.raw.append(msg)
        else:
            raise TypeError(f"Expected {self.msg_type}, got {type(msg)}")

    def wait_for_all_acked(self, timeout: Duration) -> bool:
        assert isinstance(timeout, Duration), timeout  # rclpy passes timeout._duration_handle on
        self.acked_wait = timeout.nanoseconds
        return True


class Node:
    """rclpy/node.py ``Node``: needs an initialised context (NotInitializedException otherwise);
    ``create_publisher`` checks the message type's type support (rclpy/type_support.py
    ``check_is_valid_msg_type``: ``msg_type.__class__._TYPE_SUPPORT``) and takes a QoSProfile or a depth."""

    def __init__(self, node_name: str, *, context: Context) -> None:
        if not context.ok():
            raise RuntimeError("cannot create node")
        self.name, self.context = node_name, context
        self.publishers: list[Publisher] = []
        self.destroyed = False

    def create_publisher(self, msg_type, topic: str, qos_profile, **kwargs) -> Publisher:
        if getattr(msg_type.__class__, "_TYPE_SUPPORT", None) is None:
            raise AttributeError(f"{msg_type} has no type support: not a ROS 2 message type")
        if isinstance(qos_profile, int):
            qos_profile = QoSProfile(depth=qos_profile)
        assert isinstance(qos_profile, QoSProfile), qos_profile
        publisher = Publisher(msg_type, topic, qos_profile)
        self.publishers.append(publisher)
        return publisher

    def destroy_node(self) -> None:
        for publisher in self.publishers:
            publisher.destroyed = True
        self.destroyed = True


class RclpyStandin:
    """What the stand-in saw: every node made, and the contexts initialised (none may be the default one)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.contexts: list[Context] = []

    def publishers(self) -> dict[str, Publisher]:
        return {p.topic: p for node in self.nodes for p in node.publishers}


def _message_module(package: str, names: list[str]) -> types.ModuleType:
    """``package.msg`` with one class per name, each with type support as rosidl's generated classes have
    (a metaclass holding ``_TYPE_SUPPORT``)."""
    module = types.ModuleType(f"{package}.msg")
    for name in names:
        meta = type(f"Metaclass_{name}", (type,), {"_TYPE_SUPPORT": object()})
        setattr(module, name, meta(name, (), {"SLOT_TYPES": ()}))
    return module


def install(monkeypatch, msgtypes: list[str]) -> RclpyStandin:
    """``rclpy`` importable as the stand-in, with the generated message packages of ``msgtypes``
    (``pkg/msg/Name``) installed; any other package does not import."""
    seen = RclpyStandin()
    rclpy = types.ModuleType("rclpy")

    def init(*, args=None, context=None, domain_id=None, signal_handler_options=None) -> None:
        assert context is not None, "edgeseg must use a context of its own (the default one installs signal handlers)"
        context.init(args, domain_id=domain_id)
        seen.contexts.append(context)

    def create_node(node_name: str, *, context=None, **kwargs) -> Node:
        node = Node(node_name, context=context)
        seen.nodes.append(node)
        return node

    rclpy.init, rclpy.create_node = init, create_node
    submodules = {
        "context": {"Context": Context},
        "qos": {
            "QoSProfile": QoSProfile,
            "HistoryPolicy": HistoryPolicy,
            "ReliabilityPolicy": ReliabilityPolicy,
            "DurabilityPolicy": DurabilityPolicy,
        },
        "duration": {"Duration": Duration},
        "node": {"Node": Node},
        "publisher": {"Publisher": Publisher},
    }
    monkeypatch.setitem(sys.modules, "rclpy", rclpy)
    for name, members in submodules.items():
        module = types.ModuleType(f"rclpy.{name}")
        module.__dict__.update(members)
        setattr(rclpy, name, module)
        monkeypatch.setitem(sys.modules, f"rclpy.{name}", module)
    packages: dict[str, list[str]] = {}
    for msgtype in msgtypes:
        package, _, name = msgtype.split("/")
        packages.setdefault(package, []).append(name)
    for package, names in packages.items():
        monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
        monkeypatch.setitem(sys.modules, f"{package}.msg", _message_module(package, names))
    return seen
