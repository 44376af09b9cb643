from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def demo(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/demo.html")
