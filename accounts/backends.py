from django.contrib.auth.backends import ModelBackend


class HumanOnlyBackend(ModelBackend):
    """The standard backend, except that bot users (the Support Bot) can never log in."""

    def user_can_authenticate(self, user) -> bool:  # type: ignore[no-untyped-def]
        return not getattr(user, "is_bot", False) and super().user_can_authenticate(user)
