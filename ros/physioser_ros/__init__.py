"""ROS 2 package physioser_ros: the `physioser_emotion` node (see node.py)."""
