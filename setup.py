# Metadata lives in pyproject.toml; this shim keeps ``python setup.py`` and
# older tooling working.
from setuptools import setup

setup()
