"""ament_python build of physioser_ros. The `physioser` Python package (pip install 'physioser[ros]')
must be importable in the same environment."""

from glob import glob

from setuptools import setup

package_name = "physioser_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="physioser maintainers",
    maintainer_email="physioser@example.org",
    description="physioser_emotion: speech emotion estimates from a microphone topic",
    license="Apache-2.0",
    entry_points={"console_scripts": [f"physioser_emotion = {package_name}.node:main"]},
)
