"""The Textual application (placeholder until the TUI lands)."""

from __future__ import annotations


def run_app(profile: str | None = None) -> int:
    from textual.app import App, ComposeResult
    from textual.widgets import Footer, Header, Static

    class StackTUI(App):
        TITLE = "stack-tui"
        BINDINGS = [("q", "quit", "Quit")]

        def compose(self) -> ComposeResult:
            yield Header()
            yield Static("stack-tui: use `stack-tui apply PROFILE` for now.")
            yield Footer()

    StackTUI().run()
    return 0
