"""Package discovery for setuptools; everything else is in pyproject.toml.

Every package under radius_op25b/ is found automatically; the two folders kept at the top of the
repository (migrations/, dictionaries/) are mapped into the package by pyproject's package-dir.
"""

from setuptools import find_packages, setup

ROOT_FOLDERS = ["radius_op25b.migrations", "radius_op25b.migrations.versions", "radius_op25b.dictionaries"]

setup(packages=find_packages(include=["radius_op25b", "radius_op25b.*"]) + ROOT_FOLDERS)
