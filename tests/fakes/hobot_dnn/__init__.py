"""A stand-in for the RDK board's ``hobot_dnn`` package (``pyeasy_dnn``), for tests without a board; it runs the
fake ``.bin`` files of ``fake_bpu.write_fake_bin`` and behaves as D-Robotics/x5-hobot-spdev
``src/python/dnn_python.cpp`` does (see ``pyeasy_dnn.py``)."""
