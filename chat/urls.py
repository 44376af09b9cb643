from django.urls import path

from chat import views

urlpatterns = [
    path("demo/", views.demo, name="demo"),
]
