"""ros2 launch physioser_ros physioser_emotion.launch.py [audio_topic:=/mic/audio] [params_file:=...]

Remaps the node's `audio`, `audio_info` and `emotion` topics (and the outputs under `emotion/`).
With `autostart:=false` in the parameters file the node waits for a lifecycle manager.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("physioser_ros"), "config", "physioser_emotion.yaml")
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters (YAML)"),
        DeclareLaunchArgument("audio_topic", default_value="audio", description="microphone topic to listen to"),
        DeclareLaunchArgument("audio_info_topic", default_value="audio_info", description="ros-drivers AudioInfo topic"),
        DeclareLaunchArgument("emotion_topic", default_value="emotion", description="where the estimates go"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        LifecycleNode(
            package="physioser_ros",
            executable="physioser_emotion",
            name="physioser_emotion",
            namespace=arg("namespace"),
            parameters=[arg("params_file")],
            remappings=[
                ("audio", arg("audio_topic")),
                ("audio_info", arg("audio_info_topic")),
                ("emotion", arg("emotion_topic")),
                ("emotion/expression", [arg("emotion_topic"), "/expression"]),
                ("emotion/json", [arg("emotion_topic"), "/json"]),
                ("emotion/diagnostics", [arg("emotion_topic"), "/diagnostics"]),
            ],
            output="screen",
            emulate_tty=True,
        ),
    ])
