"""A stand-in for the RDK board's ``hobot_dnn`` package, for tests without a board.

``pyeasy_dnn`` implements exactly the documented surface of the real module (``load``, the models' ``inputs`` /
``outputs`` with ``name`` and ``properties``, ``forward`` returning tensors with ``buffer`` and
``properties``) on top of ONNX Runtime, so a backend that passes against it uses nothing else. What it
runs is a fake ``.bin`` that ``fakebin.write_fake_bin`` makes from an edgeseg INT8 ONNX: not an ONNX file, so
nothing but this runtime can read it, as with a real .bin.
"""
