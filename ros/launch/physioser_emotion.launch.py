"""ros2 launch physioser_ros physioser_emotion.launch.py [audio_topic:=/mic/audio] [params_file:=...]"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("physioser_ros"), "config", "physioser_emotion.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters (YAML)"),
        DeclareLaunchArgument("audio_topic", default_value="audio", description="microphone topic to listen to"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        Node(
            package="physioser_ros",
            executable="physioser_emotion",
            name="physioser_emotion",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file")],
            remappings=[("audio", LaunchConfiguration("audio_topic"))],
            output="screen",
            emulate_tty=True,
        ),
    ])
