"""Label text is readable on any label colour (WCAG AA: 4.5 : 1)."""

from __future__ import annotations

import itertools

from issues.models import Label


def luminance(color: str) -> float:
    channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_every_colour_gets_text_with_at_least_aa_contrast() -> None:
    steps = [f"{v:02x}" for v in range(0, 256, 15)]
    worst = 21.0
    for r, g, b in itertools.product(steps, repeat=3):
        background = f"#{r}{g}{b}"
        text = Label(color=background).text_color
        pair = sorted([luminance(background), 1.0 if text == "#fff" else 0.0])
        worst = min(worst, (pair[1] + 0.05) / (pair[0] + 0.05))
    assert worst >= 4.5


def test_the_demo_colours_that_failed_now_pass() -> None:
    # #6699cc with white text was 2.98 : 1; #f0ad4e 2.03 : 1.
    assert Label(color="#6699cc").text_color == "#000"
    assert Label(color="#f0ad4e").text_color == "#000"
    assert Label(color="#333333").text_color == "#fff"
    assert Label(color="not-a-colour").text_color == "#fff"
