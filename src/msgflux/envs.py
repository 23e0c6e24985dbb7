"""``set_envs``: configure API keys and base URLs from code."""

from __future__ import annotations

import os

__all__ = ["set_envs"]


def set_envs(**variables: str | None) -> None:
    """Set environment variables, e.g. ``set_envs(OPENAI_API_KEY="sk-...")``; None unsets one."""
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        elif isinstance(value, str):
            os.environ[name] = value
        else:
            raise TypeError(f"set_envs: {name} must be a str or None, got {type(value).__name__}")
