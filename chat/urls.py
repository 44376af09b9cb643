from django.urls import path, re_path

from chat import api, views

urlpatterns = [
    path("demo/", views.demo, name="demo"),
    path("api/widget-config", api.widget_config, name="widget-config"),
    path("api/conversations", api.start, name="conversation-start"),
    path("api/conversations/<uuid:conversation_id>", api.detail, name="conversation-detail"),
    path("api/conversations/<uuid:conversation_id>/messages", api.post_message, name="conversation-messages"),
    path("api/conversations/<uuid:conversation_id>/events", api.events, name="conversation-events"),
    path(
        "api/conversations/<uuid:conversation_id>/messages/<int:message_id>/feedback",
        api.feedback,
        name="message-feedback",
    ),
    path(
        "api/conversations/<uuid:conversation_id>/messages/<int:message_id>/choose",
        api.choose,
        name="message-choose",
    ),
    path("api/conversations/<uuid:conversation_id>/handoff", api.handoff, name="conversation-handoff"),
    path("api/conversations/<uuid:conversation_id>/contact", api.contact, name="conversation-contact"),
    path("api/conversations/<uuid:conversation_id>/close", api.close, name="conversation-close"),
    path(
        "api/conversations/<uuid:conversation_id>/messages/<int:message_id>/csat",
        api.rate,
        name="message-csat",
    ),
    re_path(r"^api/", api.not_found),
]
