"""Personal access tokens: how scripts and integrations sign in to the REST API (/api/v4)."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# A token's recognisable start, as GitLab's ``glpat-``: secret scanners (and people) can tell
# what a leaked string is and whose it is to revoke.
TOKEN_PREFIX = "sdpat-"  # noqa: S105 - a public prefix, not a secret


def token_digest(token: str) -> str:
    """What is stored: the SHA-256 of the whole token. The token is 192 random bits, so a
    fast hash is enough (nothing to brute-force), and the lookup is one indexed equality."""
    return hashlib.sha256(token.encode()).hexdigest()


class PersonalAccessToken(models.Model):
    class Scope(models.TextChoices):
        READ_API = "read_api", _("read_api: read everything you can read")
        API = "api", _("api: read and write as you")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_tokens"
    )
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    # The token works through the day before this date (UTC), as GitLab's expires_at.
    expires_at = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # Constraints and Meta.indexes rather than unique=True / db_index=True on text columns:
        # those add a LIKE 'prefix%' twin on PostgreSQL that no query uses
        # (tests/servicedesk/test_indexes.py).
        constraints = [models.UniqueConstraint(fields=["digest"], name="token_digest_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @property
    def expired(self) -> bool:
        return self.expires_at <= timezone.now().date()

    @property
    def active(self) -> bool:
        return self.revoked_at is None and not self.expired

    @property
    def can_write(self) -> bool:
        return self.Scope.API in self.scopes
