"""/api/v4/… (included from servicedesk/urls.py). A project is named by its id or its
URL-encoded full path (``acme%2Fgame``), which arrives decoded: the ``path`` converter takes
the slashes, and the fixed words after it (``/issues``…) end it."""

from django.urls import path

from . import docs, views

project = "projects/<path:project_id>"
issue = f"{project}/issues/<int:iid>"

urlpatterns = [
    path("openapi", docs.SchemaView.as_view(), name="api_schema"),
    path("docs", docs.api_docs, name="api_docs"),
    path("user", views.CurrentUserView.as_view(), name="api_user"),
    path("projects", views.ProjectListView.as_view(), name="api_projects"),
    path(f"{project}/issues", views.IssueListView.as_view(), name="api_issues"),
    path(issue, views.IssueDetailView.as_view(), name="api_issue"),
    path(f"{issue}/move", views.IssueMoveView.as_view(), name="api_issue_move"),
    path(f"{issue}/notes", views.NoteListView.as_view(), name="api_notes"),
    path(f"{issue}/participants", views.ParticipantListView.as_view(), name="api_participants"),
    path(
        f"{issue}/participants/<int:participant_id>",
        views.ParticipantDetailView.as_view(),
        name="api_participant",
    ),
    path(f"{project}/service_desk", views.ServiceDeskView.as_view(), name="api_service_desk"),
    path(
        f"{project}/inbound_emails",
        views.InboundEmailListView.as_view(),
        name="api_inbound_emails",
    ),
    path(
        f"{project}/inbound_emails/<int:message_id>",
        views.InboundEmailDetailView.as_view(),
        name="api_inbound_email",
    ),
    # Last: any other path below projects/ is a project's id or path.
    path(project, views.ProjectDetailView.as_view(), name="api_project"),
]
