from django.apps import AppConfig


class MailroomConfig(AppConfig):
    name = "mailroom"
    verbose_name = "Mailroom"

    def ready(self) -> None:
        from anymail.signals import inbound

        from . import checks  # noqa: F401 - registers the system checks
        from .transport import anymail_inbound_received

        inbound.connect(anymail_inbound_received, dispatch_uid="mailroom-anymail-inbound")
