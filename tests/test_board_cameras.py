"""Several of the board's own sources at once, without a board: two MIPI cameras (``mipi:0 mipi:1``) and several
hardware-decoded streams read together, each on what the runtime gives it, and reopened forever when a live one
stops; against the ``libsrcampy`` stand-in (tests/fakes/hobot_vio), whose quirks (one test each) follow
D-Robotics/x5-hobot-spdev ``vpp_python.cpp`` / ``vpp_camera.cpp`` / ``vpp_codec.cpp``."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from corpus import decoded_frames, make_clip
from edgeseg.errors import EdgesegError
from edgeseg.preprocess import Nv12Frame
from edgeseg.sources import BoardInputs, HardwareDecoded, MipiCamera, RetryPolicy, open_sources
from edgeseg.sources import board as board_sources

pytestmark = pytest.mark.timeout(120)
FOREVER = RetryPolicy(attempts=None, backoff_s=0.001)  # attempts=None: reopen for as long as it takes
FINITE = RetryPolicy(attempts=4)  # today's behaviour: a camera that stops ends the source


@pytest.fixture(scope="module")
def clips(tmp_path_factory, coco128_images) -> list[Path]:
    """Three MJPEG clips of 8 different coco128 scenes each (1280x720): three sensors, three streams."""
    d = tmp_path_factory.mktemp("clips")
    return [make_clip(d / f"c{k}.avi", coco128_images[20 + 8 * k : 28 + 8 * k], size=(1280, 720)) for k in range(3)]


@pytest.fixture
def vio(fakes, monkeypatch, tmp_path, clips):
    """The stand-in library on a board whose config lists two camera ports, clip 0 on mipi:0 and clip 1 on mipi:1."""
    config, board_id = tmp_path / "board_config.json", tmp_path / "board_id"
    config.write_text(json.dumps({"board_301": {"cameras": [{"mipi_host": 0}, {"mipi_host": 2}]}}))
    board_id.write_text("301\n")
    monkeypatch.setattr(board_sources, "BOARD_CONFIG", config)
    monkeypatch.setattr(board_sources, "BOARD_ID", board_id)
    monkeypatch.setenv("EDGESEG_FAKE_MIPI_CLIP", os.pathsep.join(map(str, clips[:2])))
    lib = __import__("hobot_vio.libsrcampy", fromlist=["Camera"])
    yield lib
    # every source gave back what it took, here and in the stand-in (cleared either way: no knock-on failures)
    held = (set(board_sources._open_cameras), set(board_sources._codec_pipes), set(lib.Camera._hosts_open), set(lib.Decoder._pipe_mask))
    for taken in (board_sources._open_cameras, board_sources._codec_pipes, lib.Camera._hosts_open, lib.Decoder._pipe_mask):
        taken.clear()
    assert held == (set(), set(), set(), set())


def _nv12(bgr: np.ndarray) -> np.ndarray:
    """The oracle's own BGR -> NV12: OpenCV's I420, chroma planes interleaved."""
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    u, v = i420[h * w : h * w * 5 // 4], i420[h * w * 5 // 4 :]
    return np.concatenate([i420[: h * w], np.stack([u, v], axis=1).reshape(-1)])


def _scaled(bgr: np.ndarray) -> np.ndarray:
    """What the scaler gives for a 1280x720 scene and a 640x640 model: 640x360 (bilinear), in NV12."""
    return _nv12(cv2.resize(bgr, (640, 360), interpolation=cv2.INTER_LINEAR))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def _read_in_threads(sources, count: int | None = None) -> list[list]:
    """Each source iterated in its own thread at the same time (``count`` items each, or to its end)."""
    got: list[list] = [[] for _ in sources]
    errors: list[BaseException] = []
    start = threading.Barrier(len(sources))

    def read(k: int) -> None:
        try:
            start.wait()
            it = iter(sources[k])
            got[k].extend(itertools.islice(it, count))
            it.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return got


# --------------------------------------------------------------------------------------------------
# two MIPI cameras


def test_two_mipi_cameras_read_together_give_frames_of_their_own_sensor(vio, clips):
    cams = [MipiCamera(f"mipi:{k}@1280x720", imgsz=(640, 640), retry=FINITE) for k in (0, 1)]
    assert [c._cam.opened_with["video_index"] for c in cams] == [0, 1] and [c._cam._host for c in cams] == [0, 2]
    got = _read_in_threads(cams)
    scenes = [[_scaled(f) for f in decoded_frames(p)] for p in clips[:2]]
    for k, items in enumerate(got):
        assert [i.index for i in items] == list(range(8)) and cams[k].failed  # each ran dry after its clip
        for item, own, other in zip(items, scenes[k], scenes[1 - k]):
            assert item.image.scene_shape == (720, 1280)
            assert _diff(item.image.data, own).max() == 0, (k, item.index)
            assert _diff(item.image.data, other).mean() > 10, (k, item.index)  # not the other camera's picture


def test_a_camera_the_board_lacks_or_already_open_is_a_one_line_error(vio):
    with pytest.raises(EdgesegError, match=r"^mipi:4: the board's camera library takes mipi:0 to mipi:3 \(or mipi for the first found\)$"):
        MipiCamera("mipi:4", imgsz=(640, 640))
    with pytest.raises(EdgesegError, match=r"^mipi:2: this board has 2 camera port\(s\) \(mipi:0 to mipi:1\)$"):
        MipiCamera("mipi:2", imgsz=(640, 640))
    first = MipiCamera("mipi:1", imgsz=(640, 640))
    with pytest.raises(EdgesegError, match=r"^mipi:1@1280x720: MIPI camera 1 is already open in this run$"):
        MipiCamera("mipi:1@1280x720", imgsz=(640, 640))
    with pytest.raises(EdgesegError, match=r"^mipi: mipi \(the first camera found\) cannot run beside another MIPI camera: name each"):
        MipiCamera("mipi", imgsz=(640, 640))
    first.close()
    again = MipiCamera("mipi:1", imgsz=(640, 640))  # closed: free for another source
    assert next(iter(again)).index == 0


# --------------------------------------------------------------------------------------------------
# the stand-in's camera quirks, one test each (vpp_camera.cpp)


def test_stand_in_two_camera_objects_open_together_on_the_same_pipe_id(vio):
    a, b = vio.Camera(), vio.Camera()
    assert a.open_cam(0, 0, 30, [640], [360]) == 0 and b.open_cam(0, 1, 30, [640], [360]) == 0  # pipe_id unused
    assert _diff(np.frombuffer(a.get_img(2, 640, 360), np.uint8), np.frombuffer(b.get_img(2, 640, 360), np.uint8)).mean() > 10
    a.close_cam(), b.close_cam()


def test_stand_in_an_index_the_config_does_not_list_opens_mipi_host_0(vio):
    cam = vio.Camera()
    assert cam.open_cam(0, 3, 30, [640], [360]) == 0 and cam._host == 0  # camera_info[3] zeroed: host 0
    cam.close_cam()
    assert vio.Camera().open_cam(0, 4, 30, [640], [360]) == -1 and vio.Camera().open_cam(0, -2, 30, [640], [360]) == -1


def test_stand_in_the_first_found_camera_and_a_sensor_held_twice(vio):
    auto, again = vio.Camera(), vio.Camera()
    assert auto.open_cam(0, -1, 30, [640], [360]) == 0 and auto._host == 0
    assert again.open_cam(0, 0, 30, [640], [360]) == -1  # the sensor is held (assumed of libhbn)
    auto.close_cam()
    assert again.open_cam(0, 0, 30, [640], [360]) == 0
    again.close_cam()


# --------------------------------------------------------------------------------------------------
# the stand-in's decoder quirks (Decoder_decode, VPPDecode::OpenDecode, VPPModule::GetPipeId)


def test_stand_in_decoders_take_the_lowest_free_of_8_pipelines_whatever_the_channel(vio):
    decoders = [vio.Decoder() for _ in range(9)]
    assert [d.decode("", 31 - k, 3, 64, 48)[0] for k, d in enumerate(decoders)] == [0] * 8 + [-1]
    assert [d.pipe_id for d in decoders[:8]] == list(range(8))  # video_chn was dropped
    assert decoders[3].close() == 0 and decoders[8].decode("", 0, 3, 64, 48) == [0, 0] and decoders[8].pipe_id == 3
    assert decoders[8].decode("", 5, 3, 64, 48) == [0, 0] and decoders[8].pipe_id == 3  # already open: unchanged
    assert decoders[3].close() == -1 and decoders[3].set_img(b"\xff", 3) == -1  # not open
    for d in decoders[:3] + decoders[4:]:
        assert d.close() == 0


# --------------------------------------------------------------------------------------------------
# several hardware-decoded streams


def test_three_hardware_decoded_clips_at_once_each_on_its_own_pipeline(vio, clips):
    sources = [HardwareDecoded(str(p), live=False) for p in clips]
    assert sorted(s.channel for s in sources) == [0, 1, 2] and [s._decoder.pipe_id for s in sources] == [s.channel for s in sources]
    got = _read_in_threads(sources)
    for k, items in enumerate(got):
        frames = decoded_frames(clips[k])
        assert [i.index for i in items] == list(range(len(frames))) == list(range(8))
        for item, frame in zip(items, frames):  # two JPEG decoders (the stand-in's, FFmpeg's): equal within rounding
            diff = _diff(item.image.data, Nv12Frame.from_bgr(frame).data)
            assert diff.mean() < 1 and diff.max() <= 16, (k, item.index, diff.mean(), diff.max())
    assert [s.channel for s in sources] == [None] * 3
    after = HardwareDecoded(str(clips[0]), live=False)  # all three closed: the lowest pipeline again
    assert after.channel == 0 == after._decoder.pipe_id
    after.close()


def test_past_the_runtimes_8_pipelines_a_stream_is_a_one_line_error_and_a_closed_one_is_reused(vio, clips):
    held = [HardwareDecoded(str(clips[0]), live=False) for _ in range(8)]
    assert [s.channel for s in held] == list(range(8))
    with pytest.raises(
        EdgesegError, match=rf"^{clips[1]}: the board's codec library decodes at most 8 streams in one process, all in use$"
    ):
        HardwareDecoded(str(clips[1]), live=False)
    held[5].close()
    reused = HardwareDecoded(str(clips[1]), live=False)
    assert reused.channel == 5 == reused._decoder.pipe_id
    for s in [*held, reused]:
        s.close()


# --------------------------------------------------------------------------------------------------
# reconnecting


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The backoff waits, recorded instead of slept; a reconnection that never ends fails after 50."""
    waits: list[float] = []

    def wait(stop, s: float) -> bool:
        waits.append(s)
        assert len(waits) < 50, "still reconnecting after 50 waits"
        return stop.is_set()

    monkeypatch.setattr(board_sources, "_wait", wait)
    return waits


def test_a_mipi_camera_that_stops_is_reopened_forever_and_resumes(vio, clips, sleeps):
    """The stand-in camera gives None once its clip ran out, until it is closed and opened again."""
    cam = MipiCamera("mipi:0@1280x720", imgsz=(640, 640), retry=FOREVER)
    states = []
    cam.state_listener = lambda state, detail: states.append((state, detail))
    it = iter(cam)
    items = list(itertools.islice(it, 20))
    it.close()
    scene = [_scaled(f) for f in decoded_frames(clips[0])]
    assert [i.index for i in items] == list(range(20)) and cam.failed is None
    for item in items:  # frames 8..15 are the reopened camera's first frames
        assert _diff(item.image.data, scene[item.index % 8]).max() == 0, item.index
    assert [s for s, _ in states] == ["connecting", "live", "reconnecting", "live", "reconnecting", "live"]
    assert states[2][1] == "the camera gave no frame for 3 reads in a row after frame 8" and cam.states.reconnects == 2
    assert not cam._opened and board_sources._open_cameras == set()  # closed with the iteration


def test_reopening_backs_off_exponentially_with_a_cap_and_a_camera_missing_at_start_waits_too(vio, monkeypatch, sleeps):
    tries = []

    class Unplugged(vio.Camera):
        """No sensor for the first 9 opens (``vp_get_sensor_config_by_mipi_host`` finds none: -1)."""

        def open_cam(self, *args, **kw):
            tries.append(args[1])
            return -1 if len(tries) <= 9 else super().open_cam(*args, **kw)

    fake = type("vio", (), {"Camera": Unplugged})
    cam = MipiCamera("mipi:1", imgsz=(640, 640), retry=RetryPolicy(attempts=None, backoff_s=1.0, max_backoff_s=30.0), vio=fake)
    states = []
    cam.state_listener = lambda state, detail: states.append(state)
    it = iter(cam)
    first = next(it)
    it.close()
    assert first.index == 0 and tries == [1] * 10 and states == ["connecting", "live"]
    assert len(sleeps) == 9
    for k, wait in enumerate(sleeps):  # 1, 2, 4, ... s up to the 30 s cap, each shortened by the jitter (a quarter)
        top = min(2.0**k, 30.0)
        assert 0.75 * top <= wait <= top, (k, wait)
    assert sleeps[-1] > 0.75 * 30.0  # the cap was reached: 2**8 s would be far past it
    tries.clear()
    with pytest.raises(EdgesegError, match=r"^mipi:1: cannot open the MIPI camera \(open_cam returned -1\)"):
        MipiCamera("mipi:1", imgsz=(640, 640), retry=FINITE, vio=type("vio", (), {"Camera": Unplugged}))  # a finite policy: at once


def test_with_a_finite_policy_a_camera_that_stops_ends_as_failed(vio, sleeps):
    cam = MipiCamera("mipi:0", imgsz=(640, 640), retry=RetryPolicy(attempts=4))
    states = []
    cam.state_listener = lambda state, detail: states.append(state)
    assert len(list(cam)) == 8 and states == ["connecting", "live"] and sleeps == []
    assert cam.failed == "the camera gave no frame for 3 reads in a row after frame 8"


def test_a_hardware_decoded_live_stream_that_drops_is_reopened_demuxer_and_decoder(vio, clips, sleeps):
    """A live stream whose packets stop (here: a clip's end) reopens its demuxer and decoder pipeline and goes on."""
    src = HardwareDecoded(str(clips[2]), live=True, retry=FOREVER)
    states = []
    src.state_listener = lambda state, detail: states.append(state)
    it = iter(src)
    items = list(itertools.islice(it, 20))
    pipe_while_live = (src.channel, src._decoder.pipe_id)
    it.close()
    frames = decoded_frames(clips[2])
    assert [i.index for i in items] == list(range(20))
    for item in items:
        diff = _diff(item.image.data, Nv12Frame.from_bgr(frames[item.index % 8]).data)
        assert diff.mean() < 1 and diff.max() <= 16, (item.index, diff.mean())
    assert states == ["connecting", "live", "reconnecting", "live", "reconnecting", "live"] and len(sleeps) == 2
    assert pipe_while_live == (0, 0) and src.channel is None  # the same lowest pipeline taken again, freed at the end
    once = HardwareDecoded(str(clips[2]), live=True, retry=RetryPolicy(attempts=4))
    once.state_listener = lambda state, detail: states.append(state)
    assert len(list(once)) == 8 and states[6:] == ["connecting", "live"]


def _appearing(monkeypatch, waits: list[float], source: Path, path: Path, after: int) -> None:
    """Waits recorded instead of slept; after ``after`` of them ``source`` appears at ``path`` (a stream coming up)."""

    def wait(stop, s: float) -> bool:
        waits.append(s)
        assert len(waits) < 50, "still reconnecting after 50 waits"
        if len(waits) == after:
            shutil.copy(source, path)
        return stop.is_set()

    monkeypatch.setattr(board_sources, "_wait", wait)


def test_a_live_stream_unreachable_at_start_is_waited_for(vio, clips, tmp_path, monkeypatch):
    later, waits = tmp_path / "later.avi", []
    _appearing(monkeypatch, waits, clips[1], later, after=3)
    src = HardwareDecoded(str(later), live=True, retry=FOREVER)
    assert src.codec is None and src.channel is None  # nothing known, nothing held yet
    states = []
    src.state_listener = lambda state, detail: states.append(state)
    it = iter(src)
    items = list(itertools.islice(it, 8))
    it.close()
    assert len(waits) == 3 and states == ["connecting", "live"] and src.codec == 3
    for item, frame in zip(items, decoded_frames(clips[1]), strict=True):
        diff = _diff(item.image.data, Nv12Frame.from_bgr(frame).data)
        assert diff.mean() < 1 and diff.max() <= 16, (item.index, diff.mean())
    with pytest.raises(EdgesegError, match=r": cannot open for hardware decoding \(OpenCV's FFmpeg cannot demux it\)$"):
        HardwareDecoded(str(tmp_path / "never.avi"), live=True, retry=RetryPolicy(attempts=4))  # finite: at once


def test_a_stream_that_comes_up_in_a_codec_the_decoder_refuses_ends_as_failed(vio, coco128_images, tmp_path, monkeypatch):
    mp4v, later, waits = make_clip(tmp_path / "mp4v.mp4", coco128_images[:2]), tmp_path / "later.mp4", []
    _appearing(monkeypatch, waits, mp4v, later, after=2)
    src = HardwareDecoded(str(later), live=True, retry=FOREVER)
    assert list(src) == [] and len(waits) == 2
    assert src.failed == "the hardware decoder takes H.264, H.265 and MJPEG, this is 'fmp4' (drop --hw-decode)"


def test_in_the_automatic_mode_a_stream_not_reachable_yet_goes_to_opencvs_reader(vio, tmp_path):
    missing = str(tmp_path / "later.avi")
    auto = open_sources([missing], live=True, retry=FOREVER, board=BoardInputs(hw_decode=None))
    forced = open_sources([missing], live=True, retry=FOREVER, board=BoardInputs(hw_decode=True))
    assert not any(isinstance(s, HardwareDecoded) for s in auto.sources)  # OpenCV's reader took it (or refused it)
    assert [type(s) for s in forced.sources] == [HardwareDecoded] and not forced.problems
    forced.sources[0].close()


@pytest.mark.slow
def test_mipi_0_and_mipi_1_run_at_once_through_the_engine_into_their_own_files(vio, board, coco128_images, tmp_path, monkeypatch):
    """`predict model.bin mipi:0 mipi:1`: both cameras on the one pool of workers, each into its own JSON Lines,
    each frame equal to what the same .bin gives for that camera's frame alone."""
    from edgeseg.backends import BoardOptions
    from edgeseg.engines.command import PredictOutputs, StreamOptions, predict_sources
    from edgeseg.predict import Segmenter

    scenes = []
    for k in (0, 1):  # scenes the memorising test model knows at its scale: each image covering the 16:9 frame twice over
        path, frames = tmp_path / f"scene{k}.avi", []
        for image in map(cv2.imread, map(str, coco128_images[20 + 8 * k : 28 + 8 * k])):
            gain = max(1280 / image.shape[1], 720 / image.shape[0])
            big = cv2.resize(image, (round(image.shape[1] * gain), round(image.shape[0] * gain)))
            y, x = (big.shape[0] - 720) // 2, (big.shape[1] - 1280) // 2
            frames.append(np.ascontiguousarray(big[y : y + 720, x : x + 1280]))
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1280, 720))
        for frame in frames:
            writer.write(frame)
        writer.release()
        scenes.append(path)
    monkeypatch.setenv("EDGESEG_FAKE_MIPI_CLIP", os.pathsep.join(map(str, scenes)))

    seg = Segmenter(board["nv12"], board=BoardOptions(runtime="hbm"))
    stream = StreamOptions(workers=2, live=False, retry=FINITE)  # every frame; each camera ends after its clip
    summary = predict_sources(
        seg,
        ["mipi:0@1280x720", "mipi:1@1280x720"],
        outputs=PredictOutputs(save_jsonl=tmp_path / "cams.jsonl"),
        stream=stream,
        show_progress=False,
    )
    assert sorted((name, stats.frames) for name, stats in summary.streams) == [("mipi0", 8), ("mipi1", 8)]
    for k in (0, 1):
        lines = [json.loads(line) for line in (tmp_path / f"cams-{k + 1}.jsonl").read_text().splitlines()]
        assert [(r["camera"], r["frame"]) for r in lines] == [(f"mipi{k}", i) for i in range(8)]
        alone = [seg(item.image) for item in MipiCamera(f"mipi:{k}@1280x720", imgsz=(640, 640), retry=FINITE)]  # no engine
        assert [[d["bbox_xyxy"] for d in r["detections"]] for r in lines] == [
            [[round(float(v), 2) for v in box] for box in d.xyxy] for d in alone
        ]
        assert sum(len(d) for d in alone) > 0  # the comparison means something
