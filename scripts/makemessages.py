"""Update the translation catalogues from the code and templates (GNU gettext's xgettext).

    python scripts/makemessages.py            every language under locale/
    python scripts/makemessages.py fr         one language, a new one too (locale/fr/…)

Then translate the new entries in locale/<code>/LC_MESSAGES/django.po (and remove "fuzzy"
once checked); `make run` and `make test` compile them (scripts/compilemessages.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Not the product's text: the virtualenv, tests, benchmarks, local state and vendored files.
IGNORE = [
    ".venv",
    "venv",
    "tests",
    "bench",
    "var",
    "artifacts",
    "docs",
    "static",
    "build",
    "*.egg-info",
]
OPTIONS = {"no_location": True, "no_obsolete": True, "ignore_patterns": IGNORE, "verbosity": 0}


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "servicedesk.settings")
    import django
    from django.core.management import call_command

    django.setup()
    locales = argv or sorted(p.name for p in (ROOT / "locale").iterdir() if p.is_dir())
    call_command("makemessages", locale=locales, **OPTIONS)
    for code in locales:
        print(f"updated locale/{code}/LC_MESSAGES/django.po")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
