from django.apps import AppConfig


class SavedRepliesConfig(AppConfig):
    name = "saved_replies"
    verbose_name = "Saved replies"
