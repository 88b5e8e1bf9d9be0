"""A feature's reference and current histograms drawn side by side on one scale: for each bin a
reference bar and a current bar, so a shift reads at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

__all__ = ["HistogramChart", "Histograms"]

BARS = " ▁▂▃▄▅▆▇█"
HEIGHT = 6
REFERENCE_STYLE = "blue"
CURRENT_STYLE = "magenta"


@dataclass(frozen=True)
class Histograms:
    """Shares per bin of the reference and of the current window; `caption` names the bins."""

    feature: str
    reference: Sequence[float]
    current: Sequence[float]
    caption: str = ""


class HistogramChart(Widget):
    """Draws `Histograms`, or a line saying why there is none."""

    DEFAULT_CSS = """
    HistogramChart { height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: Histograms | str = ""

    def show(self, histograms: Histograms | str) -> None:
        """Draw these histograms, or say this instead."""
        if histograms != self._shown:
            self._shown = histograms
            self.refresh(layout=True)

    def render(self) -> RenderableType:
        shown = self._shown
        if isinstance(shown, str):
            return Text(shown)
        top = max([*shown.reference, *shown.current, 0.0]) or 1.0
        text = Text()
        text.append(f"{shown.feature}: ")
        text.append("█ reference", style=REFERENCE_STYLE)
        text.append("  ")
        text.append("█ current", style=CURRENT_STYLE)
        text.append(f"  (tallest bar: {top:.1%} of rows)\n")
        pairs = list(zip(shown.reference, shown.current, strict=False))
        for line in range(HEIGHT - 1, -1, -1):
            for reference, current in pairs:
                text.append(_bar(reference / top, line), style=REFERENCE_STYLE)
                text.append(_bar(current / top, line), style=CURRENT_STYLE)
                text.append(" ")
            text.append("\n")
        text.append(shown.caption, style="dim")
        return text


def _bar(height: float, line: int) -> str:
    """The character of a bar `height` (0..1 of the chart) on `line` (0 at the bottom)."""
    eighths = round(height * HEIGHT * 8) - line * 8
    return BARS[max(0, min(8, eighths))]
