from django import template
from django.utils.safestring import SafeString, mark_safe

from issues.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    # render_markdown returns bleach-sanitised HTML; marking it safe is what it is for.
    return mark_safe(render_markdown(text))  # noqa: S308
