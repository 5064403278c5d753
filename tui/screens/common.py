"""Small pure-UI helpers shared by the screens (no engine logic here)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from rich.segment import Segment
from rich.text import Text
from textual.binding import Binding
from textual.strip import Strip
from textual.validation import ValidationResult, Validator
from textual.widgets import Checkbox, Input, RadioButton, SelectionList
from textual.widgets.option_list import OptionDoesNotExist

if TYPE_CHECKING:
    from textual.app import App
    from textual.screen import Screen

WIZARD_STEPS = (("host", "Host"), ("credentials", "Credentials"), ("services", "Services"),
                ("review", "Review"))


class Field(Input):
    """An Input that follows the app's cursor-blink setting (off for stable snapshots)."""

    def on_mount(self) -> None:
        if not getattr(self.app, "blink", True):
            self.cursor_blink = False


class Check(Validator):
    """A validator from a function returning the reason a value is wrong, or None."""

    def __init__(self, why: Callable[[str], str | None]):
        super().__init__()
        self.why = why

    def validate(self, value: str) -> ValidationResult:
        reason = self.why(value)
        return self.failure(reason) if reason else self.success()


def breadcrumb(current: str) -> Text:
    """'Host › Credentials › Services › Review' with the current step highlighted."""
    out = Text()
    for i, (key, title) in enumerate(WIZARD_STEPS):
        if i:
            out.append(" › ", style="dim")
        if key == current:
            out.append(f"{i + 1}. {title}", style="bold reverse")
        else:
            out.append(f"{i + 1}. {title}", style="dim")
    return out


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    gib = n / 1024 ** 3
    if gib >= 1:
        return f"{gib:.1f} GiB"
    return f"{n / 1024 ** 2:.0f} MiB"


def ask_from_thread(app: "App", make_screen: Callable[[], "Screen"], *, default: Any,
                    closing: threading.Event, before: Callable[[], None] | None = None) -> Any:
    """From a worker thread: push a modal on the UI thread and block until it is dismissed.

    Returns ``default`` when the app is closing (so a worker never hangs the exit)."""
    if closing.is_set():
        return default
    answered = threading.Event()
    box: dict[str, Any] = {}

    def done(result) -> None:
        box["value"] = result
        answered.set()

    def show():
        if before is not None:
            before()
        return app.push_screen(make_screen(), callback=done)

    try:
        app.call_from_thread(show)
    except Exception:  # the app is gone or the screen failed
        return default
    app_closing = getattr(app, "closing", None)
    while not answered.wait(0.1):
        if closing.is_set() or (app_closing is not None and app_closing.is_set()):
            return default
    return box.get("value", default)


def tildify(path) -> str:
    """A path as people write it: the home directory as ~."""
    from pathlib import Path

    text = str(path)
    home = str(Path.home())
    if home not in ("", "/") and (text == home or text.startswith(home + "/")):
        return "~" + text[len(home):]
    return text


def apply_breakpoints(screen) -> None:
    """Set the app's breakpoint classes (-narrow/-wide, -short/-tall) on ``screen`` now.

    Textual sets them on Resize only; a screen pushed later in a real terminal may never
    get one, and then kept the layout meant for a bigger terminal."""
    app = screen.app
    width, height = app.size
    for points, value in ((app.HORIZONTAL_BREAKPOINTS or [], width),
                          (app.VERTICAL_BREAKPOINTS or [], height)):
        chosen = None
        for threshold, name in sorted(points):
            if value >= threshold:
                chosen = name
        for _, name in points:
            screen.set_class(name == chosen, name)


class Responsive:
    """Mixin for screens: breakpoint classes applied whenever the screen is shown."""

    def on_screen_resume(self) -> None:
        apply_breakpoints(self)


# -- selection state by glyph, not only colour (NO_COLOR, 16 colours, screen readers) ------
class Tick(Checkbox):
    """A Checkbox whose state shows by glyph: ▐X▌ ticked, ▐ ▌ not."""

    @property
    def BUTTON_INNER(self) -> str:  # noqa: N802 - Textual's name, read when drawing
        return "X" if self.value else " "


class Radio(RadioButton):
    """A RadioButton whose state shows by glyph: ● chosen, ○ not."""

    @property
    def BUTTON_INNER(self) -> str:  # noqa: N802
        return "●" if self.value else "○"


class Choices(SelectionList):
    """A SelectionList whose rows show their state by glyph: ▐X▌ chosen, ▐ ▌ not.

    Space toggles; enter goes on (the screen's Next), so pressing enter through the
    wizard never turns a service off by accident."""

    BINDINGS = [Binding("enter", "screen.next", "Next", show=False)]

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        segs = list(strip)
        if len(segs) < 3 or segs[1].text != Checkbox.BUTTON_INNER:
            return strip
        try:
            option = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:  # below the last row
            return strip
        if option.value in self.selected:
            return strip
        segs[1] = Segment(" ", segs[1].style)
        return Strip(segs, strip.cell_length)
