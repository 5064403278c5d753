"""stack-tui: a keyboard-driven installer for OpenStack's control plane."""

__version__ = "0.1.0"
