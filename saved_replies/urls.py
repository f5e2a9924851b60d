from django.urls import path

from . import views

urlpatterns = [
    path("-/profile/saved_replies/", views.saved_replies, name="saved_replies"),
    path(
        "-/profile/saved_replies/<int:reply_id>/", views.saved_reply_edit, name="saved_reply_edit"
    ),
]
