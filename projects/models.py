from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

path_validator = RegexValidator(
    r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
    "Use letters, digits, '_', '-' and '.'; start with a letter, digit or '_'.",
)
project_key_validator = RegexValidator(
    r"^[a-z0-9_]+$", "Only lowercase letters, digits and underscores are allowed."
)

_NON_SLUG = re.compile(r"[^a-z0-9]")


def slugify_path(full_path: str) -> str:
    """GitLab's full_path_slug: lowercase, non-[a-z0-9] to '-', at most 63 chars, no edge '-'."""
    return _NON_SLUG.sub("-", full_path.lower())[:63].strip("-")


class Role(models.IntegerChoices):
    GUEST = 10, _("Guest")
    REPORTER = 20, _("Reporter")
    DEVELOPER = 30, _("Developer")
    MAINTAINER = 40, _("Maintainer")
    OWNER = 50, _("Owner")


class Visibility(models.TextChoices):
    PRIVATE = "private", _("Private")
    INTERNAL = "internal", _("Internal (any signed-in user)")
    PUBLIC = "public", _("Public")


class Group(models.Model):
    path = models.CharField(max_length=100, validators=[path_validator])
    name = models.CharField(max_length=255)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="subgroups"
    )
    # Denormalised "parent/child" path: permission checks and routing look groups up by it.
    full_path = models.CharField(max_length=1000, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["full_path"]
        constraints = [
            models.UniqueConstraint(fields=["parent", "path"], name="group_path_unique_in_parent"),
            models.UniqueConstraint(
                fields=["path"], condition=Q(parent__isnull=True), name="group_path_unique_top"
            ),
        ]

    def __str__(self) -> str:
        return self.full_path

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The model's own rule, whoever saves (services, the Django admin, a shell): the path
        # under the parent's. Groups and projects below follow through projects.services
        # (group_path_change), which also keeps their old addresses routing.
        self.full_path = f"{self.parent.full_path}/{self.path}" if self.parent else self.path
        _with_full_path(kwargs)
        super().save(*args, **kwargs)


def _with_full_path(kwargs: dict[str, Any]) -> None:
    """A save(update_fields=[...]) that changes the path must write full_path too."""
    fields = kwargs.get("update_fields")
    if fields is not None and {"path", "parent", "group"} & set(fields):
        kwargs["update_fields"] = {*fields, "full_path"}


class Project(models.Model):
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="projects")
    path = models.CharField(max_length=100, validators=[path_validator])
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE
    )
    full_path = models.CharField(max_length=1100, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["full_path"]
        constraints = [
            models.UniqueConstraint(fields=["group", "path"], name="project_path_unique_in_group")
        ]

    def __str__(self) -> str:
        return self.full_path

    def save(self, *args: Any, **kwargs: Any) -> None:
        # As Group.save: full_path is always the group's path and our own.
        self.full_path = f"{self.group.full_path}/{self.path}"
        _with_full_path(kwargs)
        super().save(*args, **kwargs)

    @property
    def full_path_slug(self) -> str:
        return slugify_path(self.full_path)

    @property
    def ancestor_group_paths(self) -> list[str]:
        """Full paths of every group above this project: "a", "a/b" for project "a/b/p"."""
        parts = self.full_path.split("/")[:-1]
        return ["/".join(parts[: i + 1]) for i in range(len(parts))]

    @property
    def is_public(self) -> bool:
        return self.visibility == Visibility.PUBLIC


class Membership(models.Model):
    """A user's role in a project, or in a group (inherited by every project below it)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships"
    )
    group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.PositiveSmallIntegerField(choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(project__isnull=False, group__isnull=True)
                    | Q(project__isnull=True, group__isnull=False)
                ),
                name="membership_project_xor_group",
            ),
            models.UniqueConstraint(
                fields=["user", "project"],
                condition=Q(project__isnull=False),
                name="membership_unique_project",
            ),
            models.UniqueConstraint(
                fields=["user", "group"],
                condition=Q(group__isnull=False),
                name="membership_unique_group",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} of {self.project or self.group}"


class DescriptionTemplate(models.Model):
    """Text appended to the description of issues created by email (SPEC §4, §6).

    Scope: a project's own, a group's (inherited by its projects), or instance-wide (neither).
    """

    name = models.CharField(max_length=100)
    content = models.TextField()
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="issue_templates"
    )
    group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, related_name="issue_templates"
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(project__isnull=True) | Q(group__isnull=True),
                name="template_single_scope",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ServiceDeskSetting(models.Model):
    """Per-project Service Desk configuration (SPEC §6). Templates left blank use the defaults."""

    DEFAULT_OUTGOING_NAME = "Support Bot"

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="service_desk"
    )
    service_desk_enabled = models.BooleanField(default=False)
    project_key = models.CharField(
        "custom email address suffix",
        max_length=255,
        blank=True,
        validators=[project_key_validator],
    )
    # Extra secret part of the address; set by "regenerate address" so it cannot be guessed.
    address_token = models.CharField(max_length=32, blank=True, editable=False)
    # The token before the last regeneration keeps routing until previous_address_expires_at
    # (SERVICEDESK_ADDRESS_GRACE_HOURS); it may be "" (the original, token-less address), so
    # the expiry, not the token, says whether there is a previous address.
    previous_address_token = models.CharField(max_length=32, blank=True, editable=False)
    previous_address_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    outgoing_name = models.CharField("email display name", max_length=255, blank=True)
    description_template = models.ForeignKey(
        DescriptionTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # On by default (GitLab's is off): a customer's answer to a closed ticket must not vanish.
    reopen_issue_on_external_participant_note = models.BooleanField(default=True)
    add_external_participants_from_cc = models.BooleanField(default=False)
    tickets_confidential_by_default = models.BooleanField(default=True)
    send_issue_closed_email = models.BooleanField(default=False)
    # Customer satisfaction: the closing email asks good / okay / bad (satisfaction app).
    satisfaction_survey = models.BooleanField(default=False)
    # A merged ticket's customer learns where their conversation continues.
    send_merged_email = models.BooleanField(default=True)
    # Off by default: which person answered is the team's business until it chooses otherwise.
    sign_replies_with_agent_name = models.BooleanField(default=False)
    thank_you_template = models.TextField(blank=True)
    new_note_template = models.TextField(blank=True)
    new_participant_template = models.TextField(blank=True)
    issue_closed_template = models.TextField(blank=True)
    merged_template = models.TextField(blank=True)
    # The language of the emails to customers (the default texts in templates/emails/<code>/),
    # one of settings.LANGUAGES; the settings form offers them.
    language = models.CharField(max_length=16, default=settings.LANGUAGE_CODE)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Service Desk of {self.project}"

    @property
    def display_name(self) -> str:
        return self.outgoing_name or self.DEFAULT_OUTGOING_NAME

    @property
    def default_key(self) -> str:
        """The key of the default address: ``<slug>-<id>[-<token>]-issue-`` (SPEC §2)."""
        return self.key_with_token(self.address_token)

    def key_with_token(self, token: str) -> str:
        token = f"-{token}" if token else ""
        return f"{self.project.full_path_slug}-{self.project_id}{token}-issue-"

    @property
    def custom_key(self) -> str:
        return f"{self.project.full_path_slug}-{self.project_key}" if self.project_key else ""


class RedirectRoute(models.Model):
    """A path a group or project had before it was renamed or moved (GitLab's redirect
    routes): old web addresses redirect to where it is now, and a project's old Service Desk
    addresses (whose key holds the old path's slug) keep routing to it.

    One row per renamed group or project and per project below it, so a project's former
    paths are one lookup. A new group or project that takes the path removes the row.
    """

    path = models.CharField(max_length=1100)
    group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, related_name="redirect_routes"
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="redirect_routes"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(project__isnull=False, group__isnull=True)
                    | Q(project__isnull=True, group__isnull=False)
                ),
                name="redirect_route_project_xor_group",
            ),
            # Not unique=True: on PostgreSQL that adds a LIKE 'prefix%' twin no query uses.
            models.UniqueConstraint(fields=["path"], name="redirect_route_path_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.path} → {self.project or self.group}"

    @property
    def target_full_path(self) -> str:
        target = self.project or self.group
        assert target is not None
        return target.full_path


class CustomEmail(models.Model):
    """A project's own email address (``support@customer.example``): Service Desk emails go out
    from it through the project's SMTP server once a verification email made the round trip
    (sent through that server, forwarded by the customer's provider back to us).

    The SMTP username and password are stored encrypted (servicedesk.encryption) and never shown
    again; "reset" deletes the row.
    """

    class Authentication(models.TextChoices):
        AUTO = "auto", _("Automatic")
        PLAIN = "plain", "PLAIN"
        LOGIN = "login", "LOGIN"
        CRAM_MD5 = "cram-md5", "CRAM-MD5"

    class State(models.TextChoices):
        STARTED = "started", _("Verifying")
        FAILED = "failed", _("Verification failed")
        VERIFIED = "verified", _("Verified")

    class Error(models.TextChoices):
        SMTP_HOST_ISSUE = "smtp_host_issue", _("SMTP host issue")
        INVALID_CREDENTIALS = "invalid_credentials", _("Invalid credentials")
        READ_TIMEOUT = "read_timeout", _("Read timeout")
        MAIL_NOT_RECEIVED = "mail_not_received_within_timeframe", _("Email not received in time")
        INCORRECT_FORWARDING_TARGET = (
            "incorrect_forwarding_target",
            _("Incorrect forwarding target"),
        )
        INCORRECT_FROM = "incorrect_from", _("Incorrect From header")
        INCORRECT_TOKEN = "incorrect_token", _("Incorrect verification token")

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="custom_email"
    )
    address = models.EmailField(max_length=254)
    smtp_host = models.CharField(max_length=255)
    smtp_port = models.PositiveIntegerField(default=587)
    smtp_username_encrypted = models.TextField()
    smtp_password_encrypted = models.TextField()
    smtp_authentication = models.CharField(
        max_length=10, choices=Authentication.choices, default=Authentication.AUTO
    )
    enabled = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.STARTED)
    token = models.CharField(max_length=12, blank=True, editable=False)
    triggered_at = models.DateTimeField(null=True, blank=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.CharField(max_length=40, choices=Error.choices, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # Sending through the project's server once enabled: its latest failure, cleared by the
    # next email it accepts (shown on the settings page).
    last_send_error = models.TextField(blank=True)
    last_send_error_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("address"), name="custom_email_address_unique"),
            models.CheckConstraint(
                condition=Q(enabled=False) | Q(state="verified"),
                name="custom_email_enabled_only_verified",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.state}) for {self.project_id}"

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    def address_with(self, detail: str) -> str:
        """``support+<detail>@customer.example``: the verification and reply-key addresses."""
        return f"{self.local_part}+{detail}@{self.domain}"

    @property
    def verification_address(self) -> str:
        return self.address_with("verify")
