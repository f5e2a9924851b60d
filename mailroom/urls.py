"""The inbound ledger pages: per project under ``<project>/-/inbound/``, instance-wide under
``/-/admin/inbound/`` (both included from servicedesk/urls.py)."""

from django.urls import path

from . import views

project_patterns = [
    path("", views.project_inbound_list, name="project_inbound_list"),
    path("<int:message_id>/", views.project_inbound_detail, name="project_inbound_detail"),
    path("<int:message_id>/raw", views.project_inbound_raw, name="project_inbound_raw"),
    path(
        "<int:message_id>/reprocess/",
        views.project_inbound_reprocess,
        name="project_inbound_reprocess",
    ),
]

instance_patterns = [
    path("", views.instance_inbound_list, name="instance_inbound_list"),
    path("<int:message_id>/", views.instance_inbound_detail, name="instance_inbound_detail"),
    path("<int:message_id>/raw", views.instance_inbound_raw, name="instance_inbound_raw"),
    path(
        "<int:message_id>/reprocess/",
        views.instance_inbound_reprocess,
        name="instance_inbound_reprocess",
    ),
]
