from django.urls import path

from . import views

urlpatterns = [
    path("-/todos/", views.todos, name="todos"),
    path("-/todos/<int:todo_id>/done/", views.todo_mark_done, name="todo_done"),
    path("-/todos/done/", views.todos_mark_all_done, name="todos_done"),
    path("-/profile/notifications/", views.notification_settings, name="notification_settings"),
]
