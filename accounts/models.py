from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _

SUPPORT_BOT_USERNAME = "support-bot"


_ABSTRACT_USERNAME = AbstractUser._meta.get_field("username")


class User(AbstractUser):
    """A person on the team, or a bot (the Support Bot) that authors what came by email.

    A custom user model from day one: Django cannot swap it later without pain.
    """

    # AbstractUser's (its words, validators and messages), unique by a constraint instead of
    # unique=True: on PostgreSQL that adds a second (varchar_pattern_ops) index for
    # LIKE 'prefix%', which no query here makes.
    username = models.CharField(**{**_ABSTRACT_USERNAME.deconstruct()[3], "unique": False})
    name = models.CharField("display name", max_length=255, blank=True)
    is_bot = models.BooleanField(
        default=False, help_text="Bots author issues and notes but can never log in."
    )
    # The language of the pages and of the team's emails to this person, one of
    # settings.LANGUAGES (the profile form offers them; no choices here, so adding a language
    # needs no migration); blank: the browser's (pages) and LANGUAGE_CODE (emails).
    language = models.CharField(_("language"), max_length=16, blank=True)
    # Pending To-Dos, kept by notifications.services: the header shows it on every page
    # without a query.
    todo_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["username"]
        constraints = [models.UniqueConstraint(fields=["username"], name="user_username_unique")]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name or self.get_full_name() or self.username

    @property
    def email_language(self) -> str:
        """The language the team's emails to this person are written in."""
        return self.language or settings.LANGUAGE_CODE
