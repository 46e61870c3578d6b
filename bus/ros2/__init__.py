"""ROS 2 bags both ways, without a ROS install (``pip install 'prescient[ros]'``: rosbags).

* :mod:`~prescient.bus.ros2.export`: a prescient log -> a rosbag2 directory (MCAP storage) with
  Autoware's ``PredictedObjects`` / ``TrackedObjects`` / ``DetectedObjects``, ``nav_msgs/Odometry``,
  ``tf2_msgs/TFMessage`` and RViz markers (``prescient log export-ros2``).
* :mod:`~prescient.bus.ros2.importer`: Autoware tracks (or detections) and odometry from a bag ->
  a prescient log that ``prescient replay`` predicts on (``prescient import ros2``).
* :mod:`~prescient.bus.ros2.types`: the typestore (the Autoware ``.msg`` files in ``msgs/`` on
  top of rosbags' ROS 2 store), topic names, and the shared conversions (time, yaw, uuid, class).

Frames: ``map`` is prescient's world frame (x east, y north, metres); ``base_link`` is the ego
frame. Nothing here imports rosbags at module import time but :mod:`types`, which the two
commands import lazily.
"""
