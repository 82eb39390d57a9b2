"""Mutation check: do the tests catch deliberate one-line bugs in the core?

Each mutation replaces one exact piece of text in one file under src/ (it must occur exactly once, so a
mutation that no longer matches the code is reported, not silently skipped). For each mutation a fresh
copy of src/, tests/, benchmarks/ and pyproject.toml goes to a temporary directory, the line is changed there, and
pytest runs the chosen tests with PYTHONPATH at the copy's src/ (subprocesses such as
``python -m edgeseg.cli`` inherit it). The working tree is never touched.

The table says, per mutation, whether it was caught and by which test: the first failing one (pytest
stops there, ``-x``), or with ``--all`` every failing test. An unmutated run goes first: if it fails,
every mutation would look caught, so the tool stops and names the failing tests.

    python tools/mutate.py                       # every mutation, default tests, stop at the first failure
    python tools/mutate.py --only nms-class-offset dfl-bins --all --tests tests/test_decode.py
    python tools/mutate.py --list                # the mutations and what each breaks

See docs/testing.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Fast, focused tests first: with -x the table names the cheapest test that catches each bug.
DEFAULT_TESTS = (
    "tests/test_decode.py",
    "tests/test_zero_points.py",
    "tests/test_masks.py",
    "tests/test_preprocess.py",
    "tests/test_outbox.py",
    "tests/test_outputs.py",
    "tests/test_ros_live.py",
    "tests/test_decode_oracle.py",
    "tests/test_board.py",
    "tests/test_board_inputs.py",
    "tests/test_sources.py",
    "tests/test_live_sources.py",
    "tests/test_stream.py",
    "tests/test_cameras.py",
    "tests/test_file_outputs.py",
    "tests/test_serve.py",
    "tests/test_cli.py",
    "tests/test_robustness.py",
    "tests/test_distributed.py",
    "tests/test_parity.py",
    "tests/test_val_crosscheck.py",
    "tests/test_families.py",
    "tests/test_tracking.py",
    "tests/test_tracking_clips.py",
    "tests/test_ros_messages.py",
    "tests/test_ros_bag.py",
    "tests/test_mqtt.py",
)


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` (exactly one occurrence) by ``new`` in ``path`` (relative to the repository)."""

    name: str
    path: str
    old: str
    new: str
    breaks: str


MUTATIONS = (
    # The slips of issue 17: each once survived the whole suite or was caught only by the slow mAP check.
    Mutation(
        "multi-label-default",
        "src/edgeseg/decode.py",
        "multi_label: bool = False\n    keep_empty_masks",
        "multi_label: bool = True\n    keep_empty_masks",
        "DecodeOptions keeps every class above conf by default",
    ),
    Mutation(
        "segmenter-multi-label",
        "src/edgeseg/predict.py",
        "return decode(outputs, self.info, lb, self.options,",
        "return decode(outputs, self.info, lb, replace(self.options, multi_label=True),",
        "Segmenter decodes with multi_label=True",
    ),
    Mutation(
        "nms-class-offset",
        "src/edgeseg/decode.py",
        "(cand.class_ids[pre, None] * MAX_WH)",
        "(cand.class_ids[pre, None] * 0)",
        "class-aware NMS silently becomes agnostic",
    ),
    Mutation(
        "dfl-bins",
        "src/edgeseg/decode.py",
        "e @ np.arange(reg_max, dtype=np.float32)",
        "e @ np.arange(1, reg_max + 1, dtype=np.float32)",
        "DFL expectation over bins 1..16 instead of 0..15",
    ),
    Mutation(
        "cell-offset",
        "src/edgeseg/decode.py",
        "cx = (cell_index % grid_w).astype(np.float32) + np.float32(0.5)",
        "cx = (cell_index % grid_w).astype(np.float32)",
        "the +0.5 cell-centre offset dropped (x)",
    ),
    Mutation(
        "pad-swap",
        "src/edgeseg/decode.py",
        "pad = np.float32([lb.pad_left, lb.pad_top, lb.pad_left, lb.pad_top])",
        "pad = np.float32([lb.pad_top, lb.pad_left, lb.pad_top, lb.pad_left])",
        "pad_left/pad_top swapped in scale_boxes",
    ),
    Mutation(
        "dequantize-zero-point",
        "src/edgeseg/backends/base.py",
        "(q.astype(np.float32) - self.zero_point.astype(np.float32)) * self.scale",
        "q.astype(np.float32) * self.scale",
        "QuantizedTensor.dequantize ignores the zero point",
    ),
    # More one-line bugs in the same code.
    Mutation(
        "threshold-zero-point",
        "src/edgeseg/decode.py",
        "math.floor(threshold / float(cls_rows.scale) + float(cls_rows.zero_point))",
        "math.floor(threshold / float(cls_rows.scale))",
        "integer cls threshold ignores the zero point",
    ),
    Mutation(
        "metadata-zero-point",
        "src/edgeseg/backends/base.py",
        'else np.int32(d["zero_point"][0])',
        "else np.int32(0)",
        "a per-tensor zero point in the model's metadata is read as 0",
    ),
    Mutation(
        "class-filter",
        "src/edgeseg/decode.py",
        "keep = np.isin(cand.class_ids, np.asarray(list(classes), np.int64))",
        "keep = np.ones(len(cand.class_ids), bool)",
        "the classes filter keeps every class",
    ),
    Mutation("agnostic-ignored", "src/edgeseg/decode.py", "    if not agnostic:\n", "    if True:\n", "agnostic NMS stays class-aware"),
    Mutation("max-det", "src/edgeseg/decode.py", "iou)[:max_det]]", "iou)[: max_det + 1]]", "one detection more than max_det"),
    Mutation(
        "clip-axis",
        "src/edgeseg/decode.py",
        "out[:, [0, 2]] = out[:, [0, 2]].clip(0, w0)",
        "out[:, [0, 2]] = out[:, [0, 2]].clip(0, h0)",
        "x clipped to the image height",
    ),
    Mutation(
        "rgb-order",
        "src/edgeseg/preprocess.py",
        "rgb = padded_bgr[..., ::-1].transpose(2, 0, 1)",
        "rgb = padded_bgr.transpose(2, 0, 1)",
        "the network gets BGR instead of RGB",
    ),
    Mutation(
        "letterbox-rounding",
        "src/edgeseg/preprocess.py",
        "round((iw - new_w) / 2 - 0.1)",
        "round((iw - new_w) / 2 + 0.1)",
        "horizontal padding rounded the other way",
    ),
    Mutation(
        "exif-ignored",
        "src/edgeseg/preprocess.py",
        "cv2.imdecode(buffer, cv2.IMREAD_COLOR)",
        "cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)",
        "EXIF orientation not applied",
    ),
    Mutation(
        "proto-offset-swap",
        "src/edgeseg/masks.py",
        "(lb.pad_top * sy, lb.pad_left * sx)",
        "(lb.pad_left * sx, lb.pad_top * sy)",
        "masks placed with the padding of the other axis",
    ),
    Mutation(
        "crop-rule",
        "src/edgeseg/masks.py",
        "start = min(max(math.ceil(x1), 0), limit)",
        "start = min(max(math.floor(x1), 0), limit)",
        "masks start one pixel left/above the box",
    ),
    Mutation(
        "mask-threshold",
        "src/edgeseg/decode.py",
        "masks.append(logits > 0)",
        "masks.append(logits > 0.5)",
        "masks thresholded at logit 0.5 instead of 0",
    ),
    Mutation("rle-delta", "src/edgeseg/masks.py", "        if i > 2:\n", "        if i > 3:\n", "COCO RLE delta coding off by one"),
    # Around the decoder: the stream runner, sources, sinks, the live view, Ray and the command line's bounds.
    Mutation(
        "live-drop-newest",
        "src/edgeseg/engines/lanes.py",
        "old_seq, _, _ = lane.queue.popleft()",
        "old_seq, _, _ = lane.queue.pop()",
        "a live source drops the newest waiting frame instead of the oldest",
    ),
    Mutation(
        "live-drop-uncounted",
        "src/edgeseg/engines/lanes.py",
        "lane.stats.dropped += 1",
        "lane.stats.dropped += 0",
        "dropped live frames are not counted",
    ),
    Mutation(
        "runner-slot-leak",
        "src/edgeseg/engines/lanes.py",
        "            self.next_seq += 1\n            self.in_flight -= 1\n",
        "            self.next_seq += 1\n",
        "the runner never gives a frame's slot back (the reader stalls after capacity frames)",
    ),
    Mutation(
        "vid-stride",
        "src/edgeseg/sources/video.py",
        "for _ in range(self.vid_stride - 1):",
        "for _ in range(self.vid_stride):",
        "--vid-stride skips one frame too many",
    ),
    Mutation(
        "camera-stops-quietly",
        "src/edgeseg/sources/video.py",
        'if self.kind == "video":\n                            break',
        'if self.kind != "url":\n                            break',
        "a camera that stops mid-run ends its source quietly",
    ),
    Mutation(
        "reconnect-once",
        "src/edgeseg/sources/video.py",
        "self._connect(self.retry.attempts, RECONNECTING)",
        "self._connect(1, RECONNECTING)",
        "a dropped stream or camera gets one try to come back, not RetryPolicy.attempts",
    ),
    Mutation(
        "backoff-uncapped",
        "src/edgeseg/sources/video.py",
        "base = min(self.max_backoff_s, self.backoff_s * 2.0 ** min(k, 64))",
        "base = self.backoff_s * 2.0 ** min(k, 64)",
        "the wait between tries grows past max_backoff_s (a camera down a day waits hours to be picked up again)",
    ),
    Mutation(
        "stall-unnoticed",
        "src/edgeseg/sources/video.py",
        'stalled = self.kind != "video" and time.monotonic() - asked >= self.retry.read_timeout_s',
        "stalled = False",
        "a stream that stalls is found only after FFmpeg's own waits (a read timeout per frame left in its decoder)",
    ),
    Mutation(
        "close-ignored",
        "src/edgeseg/sources/video.py",
        "        self._closed.set()\n",
        "        pass\n",
        "close() does not end an iteration that waits for its camera",
    ),
    Mutation(
        "partial-video-moved",
        "src/edgeseg/outputs/video.py",
        "        if self.failed:\n            self._writer.release()",
        "        if False:\n            self._writer.release()",
        "a video whose writes failed is moved into place as if complete",
    ),
    Mutation(
        "encoder-failure-ignored",
        "src/edgeseg/outputs/video.py",
        "if self._writer.write(image) is False:",
        "if self._writer.write(image) is None:",
        "a frame the encoder did not write goes unnoticed",
    ),
    Mutation(
        "jsonl-no-cut-back",
        "src/edgeseg/outputs/jsonl.py",
        "os.ftruncate(file.fileno(), self._whole_bytes)",
        "os.ftruncate(file.fileno(), os.fstat(file.fileno()).st_size)",
        "JSON Lines keep a cut last line after a failed write",
    ),
    # Several cameras at once (issue 31): the scheduler, per-camera state, and a frame lost by the bookkeeping.
    Mutation(
        "unfair-turns",
        "src/edgeseg/engines/lanes.py",
        "                self.turn = (self.turn + k + 1) % n\n",
        "                self.turn = 0\n",
        "workers always serve the first camera with a frame waiting: a fast camera starves the others",
    ),
    Mutation(
        "cameras-share-a-tracker",
        "src/edgeseg/engines/threads.py",
        "frame.tracking = lane.session.update(frame.detections, frame.index)",
        "frame.tracking = next(iter(self.sessions.values())).update(frame.detections, frame.index)",
        "every camera's detections go through the first camera's tracker and counters",
    ),
    Mutation(
        "dropped-frame-not-skipped",
        "src/edgeseg/engines/lanes.py",
        "            lane.skipped.add(old_seq)\n",
        "            pass\n",
        "a live frame dropped from the queue is not marked skipped: its camera waits for it forever",
    ),
    Mutation(
        "rotation-frame-twice",
        "src/edgeseg/outputs/video.py",
        "self._segments.due(self._partial_bytes):\n            self._finish()",
        "self._segments.due(self._partial_bytes):\n            self._writer.write(image)\n            self._finish()",
        "the frame that starts a video segment is also written into the one it closes",
    ),
    Mutation(
        "rotation-line-lost",
        "src/edgeseg/outputs/jsonl.py",
        "            self._finish()\n            self._open()\n",
        "            self._finish()\n            self._open()\n            return\n",
        "the frame that starts a JSON Lines segment is lost",
    ),
    Mutation(
        "rotation-late",
        "src/edgeseg/outputs/files.py",
        "r.clock() - self._first_frame_at >= r.max_seconds",
        "r.clock() - self._first_frame_at > r.max_seconds",
        "a segment max_seconds old takes one frame more before the next starts",
    ),
    Mutation(
        "token-unchecked",
        "src/edgeseg/serve/server.py",
        "if not hmac.compare_digest(given.encode(), token.encode()):",
        "if not given:",
        "the live view takes any token",
    ),
    Mutation(
        "loopback-by-range",
        "src/edgeseg/serve/config.py",
        "return ipaddress.ip_address(host).is_loopback",
        "return ipaddress.ip_address(host).is_private",
        "private addresses count as loopback (no token needed)",
    ),
    Mutation(
        "host-unchecked",
        "src/edgeseg/serve/server.py",
        "if self._loopback and host is not None and not self._our_name(",
        "if not self._loopback and host is not None and not self._our_name(",
        "any Host header is served on loopback (DNS rebinding)",
    ),
    Mutation(
        "viewer-limit",
        "src/edgeseg/serve/server.py",
        "self.hub.viewers >= self.config.max_viewers",
        "self.hub.viewers > self.config.max_viewers",
        "one viewer more than max_viewers",
    ),
    Mutation(
        "viewer-kept",
        "src/edgeseg/serve/server.py",
        "handler_cancellation=True",
        "handler_cancellation=False",
        "a viewer who disconnects keeps its slot until the next frame",
    ),
    Mutation(
        "ray-row-order",
        "src/edgeseg/engines/cluster.py",
        '    return sorted(rows, key=lambda r: r["index"])',
        "    return rows",
        "Ray's rows gathered in completion order, not listing order",
    ),
    Mutation(
        "poison-tries",
        "src/edgeseg/engines/actors.py",
        "if died >= most:",
        "if died > most:",
        "an image that kills its actors is tried once more than max_tries",
    ),
    Mutation(
        "memory-error-fails-job",
        "src/edgeseg/engines/actors.py",
        "except MemoryError:",
        "except RecursionError:",
        "MemoryError on one image fails the Ray job",
    ),
    Mutation("port-bound", "src/edgeseg/address.py", "int(port) > 65535", "int(port) > 65536", "port 65536 accepted"),
    Mutation(
        "workers-bound",
        "src/edgeseg/cli/options.py",
        "if value > PER_CORE_LIMIT * cores:",
        "if value > PER_CORE_LIMIT * cores + 1:",
        "one worker more than the per-core limit accepted",
    ),
    Mutation(
        "unicode-digits",
        "src/edgeseg/address.py",
        're.compile(r"[0-9]+")',
        're.compile(r"\\d+")',
        "non-ASCII digits accepted as numbers",
    ),
    # the RDK board: its runtimes as their sources behave, NV12 frames, its camera and decoder
    Mutation(
        "pyeasy-valid-shape",
        "src/edgeseg/backends/pyeasy.py",
        "shape = tuple(int(v) for v in p.shape)",
        "shape = tuple(int(v) for v in p.validShape)",
        "pyeasy_dnn's validShape (an opaque int) read as a shape",
    ),
    Mutation(
        "pyeasy-float-bytes",
        "src/edgeseg/backends/pyeasy.py",
        "inputs = np.ascontiguousarray(inputs, np.float32).reshape(-1).view(np.uint8)",
        "inputs = np.ascontiguousarray(inputs, np.float32)",
        "a float input handed to forward as floats (it copies a byte per element)",
    ),
    Mutation(
        "pyeasy-rgb-in-place",
        "src/edgeseg/backends/pyeasy.py",
        'inputs = np.array(inputs, np.uint8, order="C", copy=True)',
        "inputs = np.ascontiguousarray(inputs)",
        "the RGB input not copied: forward subtracts 128 in the caller's array",
    ),
    Mutation(
        "pyeasy-core-bit",
        "src/edgeseg/backends/pyeasy.py",
        "else 1 << core",
        "else core",
        "BPU core n passed as core_id n (0 means any core)",
    ),
    Mutation(
        "board-nchw",
        "src/edgeseg/backends/board.py",
        "nhwc = data.transpose(0, 2, 3, 1) if self.nchw else data",
        "nhwc = data",
        "NCHW outputs read as NHWC",
    ),
    Mutation(
        "hbm-zero-point",
        "src/edgeseg/backends/board.py",
        "zp = np.zeros(0, np.int32) if d.zero_point is None else",
        "zp = np.zeros(0, np.int32) if True else",
        "hbm_runtime's zero points ignored",
    ),
    Mutation(
        "hbm-layout-vote",
        "src/edgeseg/backends/hbm.py",
        "            if nhwc != nchw:",
        "            if nhwc or nchw:",
        "hbm_runtime's missing layout guessed from shapes that fit both",
    ),
    Mutation(
        "hbm-import-error",
        "src/edgeseg/backends/__init__.py",
        "    except (ImportError, OSError, RuntimeError) as exc:\n        return None",
        "    except (ImportError, OSError) as exc:\n        return None",
        "hbm_runtime's RuntimeError on a missing libdnn.so not caught",
    ),
    Mutation("nv12-chroma-order", "src/edgeseg/preprocess.py", "cv2.merge([u, v])", "cv2.merge([v, u])", "NV12 chroma written V,U (NV21)"),
    Mutation(
        "nv12-letterbox-chroma",
        "src/edgeseg/preprocess.py",
        "cy0, cx0 = y0 // 2, x0 // 2",
        "cy0, cx0 = x0 // 2, y0 // 2",
        "letterbox_nv12 places the chroma at swapped offsets",
    ),
    Mutation(
        "nv12-shrink-phase",
        "src/edgeseg/preprocess.py",
        "return plane[k // 2 :: k, k // 2 :: k]",
        "return plane[::k, ::k]",
        "the whole-factor shrink samples the wrong pixel",
    ),
    Mutation(
        "mipi-inner-size",
        "src/edgeseg/sources/board.py",
        "[fw, self.spec.width], [fh, self.spec.height])",
        "[self.spec.width], [self.spec.height])",
        "the camera not asked for the letterbox's inner size",
    ),
    Mutation(
        "decoder-statics",
        "src/edgeseg/sources/board.py",
        'self._decoder.decode("", free[0], self.codec, self.width, self.height)[0]',
        'self._decoder.decode("", free[0])[0]',
        "the decoder's C-static arguments left to a previous call",
    ),
    Mutation(
        "decoder-drain",
        "src/edgeseg/sources/board.py",
        "while (data := self._decoder.get_img()) is not None:",
        "while (data := None) is not None:",
        "the frames still inside the decoder at the end are lost",
    ),
    # The YOLO26 path: 4-distance boxes and the end-to-end (one-to-one) selection.
    Mutation(
        "distance-order",
        "src/edgeseg/decode.py",
        "dist = box_logits.reshape(k, 4)",
        "dist = box_logits.reshape(k, 4)[:, [1, 0, 3, 2]]",
        "reg_max 1: left/top and right/bottom distances swapped",
    ),
    Mutation(
        "end2end-nms",
        "src/edgeseg/decode.py",
        "    if info.end2end:\n        cand = select_candidates(",
        "    if False:\n        cand = select_candidates(",
        "one-to-one heads decoded with NMS instead of the top-k",
    ),
    Mutation(
        "end2end-one-class",
        "src/edgeseg/decode.py",
        "multi_label=not options.agnostic)",
        "multi_label=False)",
        "end-to-end top-k over each cell's best class only, not every anchor x class pair",
    ),
    Mutation(
        "end2end-classes-first",
        "src/edgeseg/decode.py",
        "cand = select_candidates(outputs, info, options.conf, None,",
        "cand = select_candidates(outputs, info, options.conf, options.classes,",
        "classes filter before the end-to-end top-k (Ultralytics filters after it)",
    ),
    # Issue 33: val below the images' own size (tests/test_val_crosscheck.py, the YOLO26 fixture at 320).
    Mutation(
        "val-drops-empty-masks",
        "src/edgeseg/cli/tools.py",
        "multi_label=not args.single_label, keep_empty_masks=True)",
        "multi_label=not args.single_label, keep_empty_masks=False)",
        "val drops detections whose mask is empty (Ultralytics' validator keeps them)",
    ),
    Mutation(
        "letterbox-ceil",
        "src/edgeseg/preprocess.py",
        "new_w, new_h = max(round(w * gain), 1), max(round(h * gain), 1)",
        "new_w, new_h = max(int(np.ceil(w * gain)), 1), max(int(np.ceil(h * gain)), 1)",
        "the letterbox content size rounded up (Ultralytics' validator's ceil) instead of rounded",
    ),
    # Tracking.
    Mutation(
        "second-stage-gate",
        "src/edgeseg/tracking/bytetrack.py",
        "SECOND_STAGE_THRESH = 0.5",
        "SECOND_STAGE_THRESH = 0.9",
        "ByteTrack's low-score stage accepts IoU 0.1 instead of 0.5",
    ),
    Mutation(
        "lost-keeps-growing",
        "src/edgeseg/tracking/bytetrack.py",
        "self.motion.stop_lost(self.mean, self.state == LOST)",
        "pass",
        "lost tracks keep growing (Ultralytics stops their size velocity)",
    ),
    Mutation(
        "kalman-dt",
        "src/edgeseg/tracking/kalman.py",
        "new_mean[:, :4] += dt * mean[:, 4:]",
        "new_mean[:, :4] += mean[:, 4:]",
        "a gap of several frames is predicted as one step",
    ),
    Mutation(
        "line-direction",
        "src/edgeseg/tracking/counting.py",
        'direction = "in" if side_prev < 0 else "out"',
        'direction = "out" if side_prev < 0 else "in"',
        "line crossings counted in the wrong direction",
    ),
    Mutation(
        "zone-hysteresis",
        "src/edgeseg/tracking/counting.py",
        "(depth > -margin if before else depth > margin)",
        "(depth > 0)",
        "zone sides switch on every wobble of the box centre",
    ),
    # The one seam of outputs (issue 32): the failure rule, applied in one place.
    Mutation(
        "fanout-stop-ignored",
        "src/edgeseg/outputs/fanout.py",
        "            if self.stopped:\n                break\n",
        "            pass\n",
        "the outputs after one that stops still get the frame: a frame that is not done is in some outputs",
    ),
    Mutation(
        "fanout-failed-kept",
        "src/edgeseg/outputs/fanout.py",
        "            self._active.remove(output)\n",
        "            pass\n",
        "an output that failed is kept and fed: a broken broker or disk fails again on every frame",
    ),
    # Live ROS 2 (issue 32): the outbox that keeps a slow peer off the pipeline, and ROS 2's names on DDS.
    Mutation(
        "outbox-unbounded",
        "src/edgeseg/outputs/outbox.py",
        "if len(self._queue) >= self.capacity:",
        "if len(self._queue) >= self.capacity + 10**9:",
        "the outbox never drops: a peer that stops answering grows it without bound",
    ),
    Mutation(
        "dds-no-rt-prefix",
        "src/edgeseg/outputs/ros/dds.py",
        "return ROS_TOPIC_PREFIX + topic",
        "return topic",
        "DDS topics without ROS 2's rt/ prefix: no ROS 2 node sees them",
    ),
    Mutation(
        "dds-type-name",
        "src/edgeseg/outputs/ros/dds.py",
        'return f"{package}::{kind}::dds_::{name}_"',
        'return f"{package}::{kind}::{name}"',
        "DDS type names without ROS 2's dds_ namespace and trailing _: no ROS 2 node matches them",
    ),
    # ROS 2 messages (issue 32): the layout, the one stamp, the one track id.
    Mutation(
        "ros-msg-field-order",
        "src/edgeseg/outputs/ros/msg/vision_msgs/Pose2D.msg",
        "vision_msgs/Point2D position\nfloat64 theta",
        "float64 theta\nvision_msgs/Point2D position",
        "two fields of a vendored .msg swapped (vision_msgs/Pose2D)",
    ),
    Mutation(
        "ros-builder-field-order",
        "src/edgeseg/outputs/ros/messages.py",
        "x_offset=o.origin[0], y_offset=o.origin[1]",
        "x_offset=o.origin[1], y_offset=o.origin[0]",
        "the mask's Roi gets x and y swapped",
    ),
    Mutation(
        "ros-stamp",
        "src/edgeseg/outputs/ros/messages.py",
        '"nanosec": stamp_ns % 1_000_000_000}',
        '"nanosec": 0}',
        "header stamps lose the fraction of a second",
    ),
    Mutation(
        "ros-track-id",
        "src/edgeseg/outputs/ros/messages.py",
        'id=str(o.track_id) if o.track_id else ""',
        'id=str(o.class_id) if o.track_id else ""',
        "Detection2D.id is the class, not the track id",
    ),
    Mutation(
        "ros-packed-size",
        "src/edgeseg/outputs/ros/packed.py",
        "return itertools.repeat(None, self.n)",
        "return iter((None,) if self.n else ())",
        "a packed sequence counted as one element when the message's size is computed",
    ),
    # Issue 32: the MQTT output against a real mosquitto (tests/test_mqtt.py).
    Mutation(
        "mqtt-no-reconnect",
        "src/edgeseg/outputs/mqtt/output.py",
        "reconnect_on_failure=True,",
        "reconnect_on_failure=False,",
        "a broker that goes away is never reconnected to (the run goes on, publishing nothing)",
    ),
    Mutation(
        "mqtt-counts-not-retained",
        "src/edgeseg/outputs/mqtt/messages.py",
        'return Publish(topics.of(frame.camera, "counts"), dumps(payload), qos=1, retain=True)',
        'return Publish(topics.of(frame.camera, "counts"), dumps(payload), qos=1, retain=False)',
        "the running counts are not retained (a subscriber that comes later sees none)",
    ),
    Mutation(
        "mqtt-no-last-will",
        "src/edgeseg/outputs/mqtt/output.py",
        "client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)",
        "pass",
        "no Last Will: a killed run stays online on the broker",
    ),
)


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # "caught", "missed" or "error"
    failing: list[str]
    seconds: float
    detail: str = ""


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")
    for name in ("src", "tests", "benchmarks"):  # tests import the repository-only modules of benchmarks/
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")


def apply(mutation: Mutation, root: Path) -> None:
    path = root / mutation.path
    text = path.read_text(encoding="utf-8")
    count = text.count(mutation.old)
    if count != 1:
        raise ValueError(f"{mutation.path}: the text to mutate occurs {count} times, expected once (update the mutation)")
    path.write_text(text.replace(mutation.old, mutation.new), encoding="utf-8")


def run_tests(root: Path, tests: list[str], stop_first: bool, timeout: float) -> tuple[int, list[str], str]:
    """(pytest's exit code, failing test ids, last output lines) of ``tests`` in the copy at ``root``."""
    env = dict(os.environ, PYTHONPATH=str(root / "src"), PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("EDGESEG_SHARED", str(REPO.parent / "shared"))  # conftest's default, from the copy's place
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=no", "-rfE", *tests]
    if stop_first:
        cmd.insert(4, "-x")
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, [], f"timed out after {timeout:.0f}s"
    # "FAILED tests/x.py::test[param id] - message": the id may hold spaces, the message follows " - ".
    failing = [m.group(1) for m in re.finditer(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", proc.stdout, re.MULTILINE)]
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
    return proc.returncode, failing, tail


def run_in_copy(mutation: Mutation | None, tests: list[str], stop_first: bool, timeout: float) -> tuple[int, list[str], str]:
    """``run_tests`` in a fresh temporary copy of the repository, with ``mutation`` applied (None: unmutated)."""
    with tempfile.TemporaryDirectory(prefix="edgeseg-mutate-") as tmp:
        root = Path(tmp)
        copy_tree(root)
        if mutation is not None:
            apply(mutation, root)
        return run_tests(root, tests, stop_first, timeout)


def check(mutation: Mutation, tests: list[str], stop_first: bool, timeout: float) -> Outcome:
    t0 = time.perf_counter()
    try:
        code, failing, tail = run_in_copy(mutation, tests, stop_first, timeout)
    except ValueError as exc:
        return Outcome(mutation, "error", [], 0.0, str(exc))
    seconds = time.perf_counter() - t0
    if code == 0:
        return Outcome(mutation, "missed", [], seconds)
    if failing:
        return Outcome(mutation, "caught", failing, seconds)
    return Outcome(mutation, "error", [], seconds, f"pytest exit code {code}: {tail}")


def table(outcomes: list[Outcome]) -> str:
    rows = ["| mutation | result | caught by | what it breaks | s |", "|---|---|---|---|---|"]
    for o in outcomes:
        by = "<br>".join(o.failing) if o.failing else (o.detail or "-")
        rows.append(f"| {o.mutation.name} | {o.status} | {by} | {o.mutation.breaks} | {o.seconds:.0f} |")
    caught = sum(o.status == "caught" for o in outcomes)
    return "\n".join(rows) + f"\n\n{caught} of {len(outcomes)} mutations caught"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations (see --list)")
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS), help="test files or ids to run, in this order")
    parser.add_argument("--all", action="store_true", help="run every chosen test and list all that fail (default: stop at the first)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per pytest run (default 1800)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:<24} {m.path:<32} {m.breaks}")
        return 0
    by_name = {m.name: m for m in MUTATIONS}
    unknown = [n for n in args.only or () if n not in by_name]
    if unknown:
        parser.error(f"unknown mutation(s) {unknown}; see --list")
    chosen = [by_name[n] for n in args.only] if args.only else list(MUTATIONS)
    if not args.no_baseline:
        print(f"baseline: {' '.join(args.tests)}", flush=True)
        code, failing, tail = run_in_copy(None, args.tests, True, args.timeout)
        if code != 0:
            print(f"the unmutated tests fail (exit {code}): {', '.join(failing) or tail}", file=sys.stderr)
            return 2
    outcomes = []
    for m in chosen:
        outcome = check(m, args.tests, not args.all, args.timeout)
        print(f"{m.name}: {outcome.status} {' '.join(outcome.failing) or outcome.detail} ({outcome.seconds:.0f}s)", flush=True)
        outcomes.append(outcome)
    print()
    print(table(outcomes))
    return 0 if all(o.status == "caught" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
