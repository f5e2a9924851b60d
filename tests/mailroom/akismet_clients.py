"""The akismet package's own test clients (no network), answering as each test needs."""

from __future__ import annotations

from typing import Any, ClassVar

import akismet


class _Recording(akismet.TestSyncClient):
    reports: ClassVar[list[tuple[str, str]]] = []

    def submit_ham(self, user_ip: str, **kwargs: Any) -> bool:
        self.reports.append(("ham", kwargs.get("comment_author_email", "")))
        return super().submit_ham(user_ip, **kwargs)

    def submit_spam(self, user_ip: str, **kwargs: Any) -> bool:
        self.reports.append(("spam", kwargs.get("comment_author_email", "")))
        return super().submit_spam(user_ip, **kwargs)


class SpamClient(_Recording):
    comment_check_response = akismet.CheckResponse.SPAM


class DiscardClient(_Recording):
    comment_check_response = akismet.CheckResponse.DISCARD


class HamClient(_Recording):
    comment_check_response = akismet.CheckResponse.HAM


class UnreachableClient(akismet.TestSyncClient):
    def comment_check(self, user_ip: str, **kwargs: Any) -> akismet.CheckResponse:
        raise akismet.RequestError("Akismet could not be reached")
