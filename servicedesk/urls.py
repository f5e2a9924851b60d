from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts import views as account_views
from issues import views as issue_views
from projects import views as project_views

from . import views

admin.site.site_header = "Service Desk administration"

issue = "<path:full_path>/-/issues/<int:iid>/"

urlpatterns = [
    path("", project_views.home, name="home"),
    path("login/", account_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("-/health", views.health, name="health"),
    path("-/uploads/<int:upload_id>/<str:filename>", issue_views.upload_download, name="upload"),
    # Links to files in emails: a signed token instead of a login.
    path("-/files/<str:token>/<str:filename>", issue_views.upload_by_token, name="upload_by_token"),
    path("-/unsubscribe/<str:reply_key>", issue_views.unsubscribe, name="unsubscribe"),
    # ESP inbound webhooks (django-anymail), e.g. /-/anymail/mailgun/inbound/
    path("-/anymail/", include("anymail.urls")),
    path("<path:full_path>/-/issues/", issue_views.issue_list, name="issue_list"),
    path(issue, issue_views.issue_detail, name="issue_detail"),
    path(f"{issue}notes/", issue_views.note_add, name="note_add"),
    path(f"{issue}close/", issue_views.issue_close_view, name="issue_close"),
    path(f"{issue}reopen/", issue_views.issue_reopen_view, name="issue_reopen"),
    # Last: a project's own page is any path that matched nothing above.
    path("<path:full_path>/", project_views.project_detail, name="project_detail"),
]
