"""ROS 2 outputs: a frame's messages (``messages.FrameEncoder``), built once and shared by the bag (``bag.BagOutput``)
and the live publisher. Nothing here imports rosbags until a ROS output is asked for (``pip install edgeseg[ros]``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ..base import Output
    from .messages import RosTopics


def ros_outputs(
    *, topics: RosTopics, bag: str | os.PathLike | None = None, storage: Literal["mcap", "sqlite3"] = "mcap", publish: bool = False
) -> list[Output]:
    """A run's ROS 2 outputs, sharing ``topics`` (so one encoding of each frame): the bag in the new folder ``bag``
    (when given; a folder that exists is one line now) and the live publisher (``publish``)."""
    outputs: list[Output] = []
    if bag is not None:
        from .bag import BagOutput

        outputs.append(BagOutput(bag, topics=topics, storage=storage))
    if publish:
        from .live import RosLiveOutput

        outputs.append(RosLiveOutput(topics=topics))
    return outputs
