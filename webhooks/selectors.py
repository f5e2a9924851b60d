from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from projects.models import Project

from .models import Webhook, WebhookDelivery

LOG_SIZE = 50  # deliveries shown per hook


def webhooks_of_project(*, project: Project) -> QuerySet[Webhook]:
    return Webhook.objects.filter(project=project).order_by("pk")


def webhook_get(*, project: Project, hook_id: int) -> Webhook:
    try:
        return Webhook.objects.select_related("project").get(project=project, pk=hook_id)
    except Webhook.DoesNotExist:
        raise Http404("No such webhook") from None


def delivery_log(*, hook: Webhook) -> list[WebhookDelivery]:
    return list(hook.deliveries.order_by("-created_at", "-pk")[:LOG_SIZE])


def delivery_get(*, hook: Webhook, delivery_id: int) -> WebhookDelivery:
    try:
        return hook.deliveries.select_related("hook").get(pk=delivery_id)
    except WebhookDelivery.DoesNotExist:
        raise Http404("No such delivery") from None
