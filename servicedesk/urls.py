from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts import admin_area
from accounts import views as account_views
from api import profile_views as token_views
from issues import customer_views, dashboard_views, outbound_views
from issues import views as issue_views
from mailroom import spam_views
from mailroom import urls as mailroom_urls
from mailroom import webhooks as mailroom_webhooks
from notifications import views as notification_views
from projects import views as project_views
from satisfaction import views as satisfaction_views
from saved_replies import views as saved_reply_views
from sla import views as sla_views
from webhooks import views as webhook_views

from . import views

admin.site.site_header = "Service Desk administration"

issue = "<path:full_path>/-/issues/<int:iid>/"
settings_sd = "<path:full_path>/-/settings/service_desk/"
templates = "<path:full_path>/-/settings/description_templates/"
hooks = "<path:full_path>/-/settings/webhooks/"
members = "<path:full_path>/-/members/"

urlpatterns = [
    path("", project_views.home, name="home"),
    path("login/", account_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Accounts (accounts/views.py): sign-up (when on), password reset, invitations, profile.
    path("-/signup/", account_views.signup_view, name="signup"),
    path("-/password/reset/", account_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "-/password/reset/sent/",
        account_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "-/password/reset/<uidb64>/<token>/",
        account_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "-/invitation/<uidb64>/<token>/",
        account_views.InvitationAcceptView.as_view(),
        name="invitation_accept",
    ),
    path("-/profile/", account_views.profile, name="profile"),
    path("-/profile/email/", account_views.profile_email, name="profile_email"),
    path("-/profile/email/<str:token>/", account_views.email_confirm, name="email_confirm"),
    path("-/profile/password/", account_views.PasswordChangeView.as_view(), name="password_change"),
    path("-/groups/new/", project_views.group_new, name="group_new"),
    path("-/projects/new/", project_views.project_new, name="project_new"),
    # The admin area (accounts/admin_area.py): instance admins only.
    path("-/admin/", admin_area.users, name="admin_users"),
    path(
        "-/admin/users/<int:user_id>/<str:action>/",
        admin_area.user_action,
        name="admin_user_action",
    ),
    path("-/admin/groups/", admin_area.groups, name="admin_groups"),
    path("-/admin/groups/<int:group_id>/", admin_area.group_edit, name="admin_group_edit"),
    path("-/admin/projects/", admin_area.projects, name="admin_projects"),
    path("-/admin/projects/<int:project_id>/", admin_area.project_edit, name="admin_project_edit"),
    path("-/admin/templates/", admin_area.templates, name="admin_templates"),
    path(
        "-/admin/templates/<int:template_id>/",
        admin_area.template_edit,
        name="admin_template_edit",
    ),
    path("admin/", admin.site.urls),
    path("-/health", views.health, name="health"),
    path("-/uploads/<int:upload_id>/<str:filename>", issue_views.upload_download, name="upload"),
    # Links to files in emails: a signed token instead of a login.
    path("-/files/<str:token>/<str:filename>", issue_views.upload_by_token, name="upload_by_token"),
    path("-/unsubscribe/<str:token>", issue_views.unsubscribe, name="unsubscribe"),
    path(
        "-/satisfaction/<str:token>/<str:score>/",
        satisfaction_views.satisfaction,
        name="satisfaction",
    ),
    # The REST API (api/urls.py) and the personal access tokens it takes.
    path("api/v4/", include("api.urls")),
    path(
        "-/profile/personal_access_tokens/",
        token_views.personal_access_tokens,
        name="personal_access_tokens",
    ),
    path(
        "-/profile/personal_access_tokens/<int:token_id>/revoke/",
        token_views.personal_access_token_revoke,
        name="personal_access_token_revoke",
    ),
    path("", include("notifications.urls")),
    path("", include("saved_replies.urls")),
    # A customer's issues across projects (Reporter+): the address is in the query string.
    path("-/customers/", customer_views.customer_detail, name="customer_detail"),
    # ESP inbound webhooks (django-anymail), e.g. /-/anymail/postmark/inbound/: only those of
    # the ESPs in SERVICEDESK_INBOUND_ESPS answer, and no tracking webhook is routed.
    path("-/anymail/", include(mailroom_webhooks)),
    path("<path:full_path>/-/issues/", issue_views.issue_list, name="issue_list"),
    path("<path:full_path>/-/issues/bulk/", issue_views.issue_bulk, name="issue_bulk"),
    path(issue, issue_views.issue_detail, name="issue_detail"),
    path(f"{issue}notes/", issue_views.note_add, name="note_add"),
    path(f"{issue}close/", issue_views.issue_close_view, name="issue_close"),
    path(f"{issue}reopen/", issue_views.issue_reopen_view, name="issue_reopen"),
    # The issue page's sidebar and comment preview (issues/views.py).
    path(f"{issue}preview/", issue_views.note_preview, name="note_preview"),
    # The issue page's presence bar: who else is here (htmx heartbeat).
    path(f"{issue}presence/", issue_views.issue_presence, name="issue_presence"),
    path(f"{issue}labels/", issue_views.issue_labels_update, name="issue_labels"),
    path(f"{issue}assignees/", issue_views.issue_assignees_update, name="issue_assignees"),
    path(
        f"{issue}confidentiality/",
        issue_views.issue_confidentiality_update,
        name="issue_confidentiality",
    ),
    path(f"{issue}participants/", issue_views.participant_add_view, name="participant_add"),
    path(
        f"{issue}notes/<int:note_id>/make-public/",
        issue_views.note_make_public_view,
        name="note_make_public",
    ),
    path(
        f"{issue}participants/<int:participant_id>/remove/",
        issue_views.participant_remove_view,
        name="participant_remove",
    ),
    path(
        f"{issue}participants/<int:participant_id>/clear-bouncing/",
        issue_views.participant_bouncing_clear_view,
        name="participant_bouncing_clear",
    ),
    path(f"{issue}convert/", issue_views.issue_convert_view, name="issue_convert"),
    path(f"{issue}move/", issue_views.issue_move_view, name="issue_move"),
    path(f"{issue}snooze/", issue_views.issue_snooze_view, name="issue_snooze"),
    path(f"{issue}merge/", issue_views.issue_merge_view, name="issue_merge"),
    path(
        f"{issue}saved_replies/<int:reply_id>/",
        saved_reply_views.saved_reply_insert,
        name="saved_reply_insert",
    ),
    # Project settings and members (projects/views.py).
    path(settings_sd, project_views.service_desk_settings, name="service_desk_settings"),
    path(
        "<path:full_path>/-/settings/notifications/",
        notification_views.project_notifications,
        name="project_notifications",
    ),
    path(
        "<path:full_path>/-/settings/saved_replies/",
        saved_reply_views.project_saved_replies,
        name="project_saved_replies",
    ),
    path(
        "<path:full_path>/-/settings/saved_replies/<int:reply_id>/",
        saved_reply_views.project_saved_reply_edit,
        name="project_saved_reply_edit",
    ),
    path(
        "<path:full_path>/-/settings/response_targets/",
        sla_views.response_targets,
        name="response_targets",
    ),
    path(hooks, webhook_views.webhook_list, name="webhook_list"),
    path(f"{hooks}<int:hook_id>/", webhook_views.webhook_edit, name="webhook_edit"),
    path(f"{hooks}<int:hook_id>/delete/", webhook_views.webhook_remove, name="webhook_delete"),
    path(f"{hooks}<int:hook_id>/test/", webhook_views.webhook_send_test, name="webhook_test"),
    path(
        f"{hooks}<int:hook_id>/deliveries/<int:delivery_id>/",
        webhook_views.webhook_delivery,
        name="webhook_delivery",
    ),
    path(
        f"{hooks}<int:hook_id>/deliveries/<int:delivery_id>/resend/",
        webhook_views.webhook_delivery_resend,
        name="webhook_delivery_resend",
    ),
    path(
        f"{settings_sd}regenerate/",
        project_views.service_desk_regenerate,
        name="service_desk_regenerate",
    ),
    path(
        f"{settings_sd}custom_email/",
        project_views.service_desk_custom_email,
        name="service_desk_custom_email",
    ),
    path(
        f"{settings_sd}custom_email/retry/",
        project_views.service_desk_custom_email_retry,
        name="service_desk_custom_email_retry",
    ),
    path(
        f"{settings_sd}custom_email/enabled/",
        project_views.service_desk_custom_email_enable,
        name="service_desk_custom_email_enable",
    ),
    path(
        f"{settings_sd}custom_email/reset/",
        project_views.service_desk_custom_email_reset,
        name="service_desk_custom_email_reset",
    ),
    path(
        f"{settings_sd}emails/<str:kind>/",
        project_views.service_desk_email_template,
        name="service_desk_email_template",
    ),
    path(
        f"{settings_sd}emails/<str:kind>/preview/",
        project_views.service_desk_email_preview,
        name="service_desk_email_preview",
    ),
    path(templates, project_views.description_template_list, name="description_template_list"),
    path(
        f"{templates}new/", project_views.description_template_new, name="description_template_new"
    ),
    path(
        f"{templates}<int:template_id>/",
        project_views.description_template_edit,
        name="description_template_edit",
    ),
    path(
        f"{templates}<int:template_id>/delete/",
        project_views.description_template_remove,
        name="description_template_delete",
    ),
    path(members, project_views.project_members, name="project_members"),
    path(
        f"{members}invite/",
        project_views.project_member_invite_view,
        name="project_member_invite",
    ),
    path(
        f"{members}<int:membership_id>/",
        project_views.project_member_update,
        name="project_member_update",
    ),
    path(
        f"{members}<int:membership_id>/remove/",
        project_views.project_member_delete,
        name="project_member_remove",
    ),
    # The spam quarantine (mailroom/spam_views.py): Reporter+.
    path("<path:full_path>/-/spam/", spam_views.spam_list, name="spam_list"),
    path(
        "<path:full_path>/-/spam/<int:message_id>/not-spam/",
        spam_views.spam_not_spam,
        name="spam_not_spam",
    ),
    path(
        "<path:full_path>/-/spam/<int:message_id>/delete/",
        spam_views.spam_delete,
        name="spam_delete",
    ),
    # The inbound ledger: per project (Maintainer+) and instance-wide (staff), mailroom/urls.py.
    path("-/admin/inbound/", include(mailroom_urls.instance_patterns)),
    path("<path:full_path>/-/inbound/", include(mailroom_urls.project_patterns)),
    # The outbound ledger, the same way round (issues/outbound_views.py).
    path("-/admin/outbound/", outbound_views.instance_outbound_list, name="instance_outbound_list"),
    path(
        "-/admin/outbound/<int:email_id>/",
        outbound_views.instance_outbound_detail,
        name="instance_outbound_detail",
    ),
    path(
        "-/admin/outbound/<int:email_id>/retry/",
        outbound_views.instance_outbound_retry,
        name="instance_outbound_retry",
    ),
    path(
        "<path:full_path>/-/outbound/",
        outbound_views.project_outbound_list,
        name="project_outbound_list",
    ),
    path(
        "<path:full_path>/-/outbound/<int:email_id>/",
        outbound_views.project_outbound_detail,
        name="project_outbound_detail",
    ),
    path(
        "<path:full_path>/-/outbound/<int:email_id>/retry/",
        outbound_views.project_outbound_retry,
        name="project_outbound_retry",
    ),
    # The project dashboard (issues/dashboard_views.py): Reporter+.
    path(
        "<path:full_path>/-/dashboard/", dashboard_views.issue_dashboard, name="project_dashboard"
    ),
    # Last: a project's own page is any path that matched nothing above.
    path("<path:full_path>/", project_views.project_detail, name="project_detail"),
]
