"""A stand-in for the RDK board's ``hobot_vio`` package (``libsrcampy``: MIPI camera and hardware codec), for tests
without a board; it behaves as D-Robotics/x5-hobot-spdev ``src/python/vpp_python.cpp`` does (see ``libsrcampy.py``)."""
