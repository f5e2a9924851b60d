"""Our own secrets out of what customers send us.

A customer's reply quotes our earlier email, and a forward carries it whole: its Reply-To
address, Message-IDs and unsubscribe link hold the recipient's reply key and unsubscribe token.
Kept in a note or a description, they would be shown to others on the issue and emailed to the
other participants — who could then post to the ticket or unsubscribe the customer. So before
email text is stored, every reply key or unsubscribe token of ours in it, and every link to our
unsubscribe page, is cut out. The raw email in the ledger keeps everything, for Maintainers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import islice

from django.db.models import Q

from issues.models import SentNotification

REDACTED = "[removed]"
# 32 hex digits standing alone: the shape of reply keys and unsubscribe tokens.
_HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{32}(?![0-9A-Za-z])")
# Our unsubscribe page, with or without scheme and host (any site: a link whose host a mail
# client rewrote is still ours).
_UNSUBSCRIBE_LINK = re.compile(
    r"(?:https?://[^\s/<>()\"'\]\[]{1,255})?/-/unsubscribe/[0-9A-Fa-f]{32}/?", re.IGNORECASE
)
# An email may be full of hex (hashes, logs): only so many candidates are looked up.
MAX_CANDIDATES = 500


def scrub_secrets(texts: Sequence[str]) -> list[str]:
    """``texts`` without our unsubscribe links, reply keys and unsubscribe tokens; one query
    for all of them, none when they hold nothing that looks like a key."""
    texts = [_UNSUBSCRIBE_LINK.sub(REDACTED, text) for text in texts]
    candidates = {
        match.group(0).lower()
        for text in texts
        for match in islice(_HEX_TOKEN.finditer(text), MAX_CANDIDATES)
    }
    if not candidates:
        return texts
    ours: set[str] = set()
    for reply_key, token in SentNotification.objects.filter(
        Q(reply_key__in=candidates) | Q(unsubscribe_token__in=candidates)
    ).values_list("reply_key", "unsubscribe_token"):
        ours.update((reply_key, token))
    if not ours:
        return texts
    return [
        _HEX_TOKEN.sub(lambda m: REDACTED if m.group(0).lower() in ours else m.group(0), text)
        for text in texts
    ]
