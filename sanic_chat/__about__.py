"""The version of sanic-chat, single-sourced for the build."""

__version__ = "0.1.0"
