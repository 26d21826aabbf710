"""vidupd: a watch-folder daemon that uploads finished videos to video platforms."""

__version__ = "0.1.0"
