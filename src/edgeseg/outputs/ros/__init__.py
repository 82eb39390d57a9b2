"""ROS 2 outputs: a frame's messages (``messages.FrameEncoder``), built once and shared by the bag (``bag.BagOutput``)
and the live publisher. Nothing here imports rosbags until a ROS output is asked for (``pip install edgeseg[ros]``)."""
