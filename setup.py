"""Package discovery, the one thing pyproject.toml cannot say: widgets/ ships as ``lorakit.widgets``
with every subpackage it has now or later (``packages.find`` would name them ``widgets.*``).
Everything else about the distribution is in pyproject.toml."""
from setuptools import find_packages, setup

PACKAGE_DIR = {"lorakit.widgets": "widgets"}  # users write: from lorakit.widgets import Studio

packages = find_packages(include=["lorakit", "lorakit.*"])
for name, folder in PACKAGE_DIR.items():
    packages += [name + sub.removeprefix(folder) for sub in find_packages(include=[folder, folder + ".*"])]

setup(packages=packages, package_dir=PACKAGE_DIR)
