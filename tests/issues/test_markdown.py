"""User Markdown is rendered and sanitised: formatting survives, anything executable does not."""

from __future__ import annotations

import pytest

from issues.markdown import render_markdown


def test_formatting_survives() -> None:
    html = render_markdown(
        "# Title\n\n**bold** _em_ `code`\n\n> quoted\n\n- one\n- two\n\n"
        "| a | b |\n|---|:-:|\n| 1 | 2 |\n\n```python\nprint(1)\n```\n\n[link](https://example.org)"
    )
    for fragment in (
        "<h1>Title</h1>",
        "<strong>bold</strong>",
        "<em>em</em>",
        "<code>code</code>",
        "<blockquote>",
        "<li>one</li>",
        "<table>",
        '<td style="text-align: center;">2</td>',
        '<code class="language-python">',
        'href="https://example.org"',
    ):
        assert fragment in html


def test_bare_urls_are_linked_with_nofollow() -> None:
    html = render_markdown("see https://example.org/x")
    assert '<a href="https://example.org/x" rel="nofollow noopener noreferrer">' in html


@pytest.mark.parametrize(
    "vector",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "[click](javascript:alert(1))",
        '<a href="JaVaScRiPt:alert(1)">x</a>',
        '<div style="background:url(javascript:alert(1))">x</div>',
        "<iframe src=https://evil.example></iframe>",
        '<svg onload="alert(1)"></svg>',
        '<p onclick="alert(1)">x</p>',
        "![x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "<style>body{display:none}</style>",
        '<form action="https://evil.example"><input name=x></form>',
    ],
)
def test_nothing_executable_survives(vector: str) -> None:
    html = render_markdown(vector).lower()
    for forbidden in ("<script", "onerror", "onload", "onclick", "javascript:", "<iframe",
                      "<svg", "<style", "<form", "<input", "data:text", "background"):  # fmt: skip
        assert forbidden not in html, (vector, html)


def test_line_breaks_are_kept_like_email() -> None:
    assert render_markdown("line one\nline two") == "<p>line one<br>\nline two</p>"


def test_a_thread_is_rendered_once_then_read_from_the_cache(
    monkeypatch, redis_cache_flushed
) -> None:
    from issues import markdown as md

    calls = []
    real = md.render_markdown
    monkeypatch.setattr(md, "render_markdown", lambda text: calls.append(text) or real(text))
    texts = ["**one**", "two <script>x</script>", "**one**"]
    first = md.render_markdown_many(texts)
    assert first == [real(t) for t in texts]
    assert calls == ["**one**", "two <script>x</script>"]  # the repeat is rendered once
    calls.clear()
    assert md.render_markdown_many(texts) == first
    assert calls == []  # the second view renders nothing
