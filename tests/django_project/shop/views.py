"""Views that touch the database the ways a real app does: reads, writes in
``transaction.atomic``, and a write rolled back by an error."""

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse

from .models import Item


def backend_pid() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def items(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        with transaction.atomic():
            pid = backend_pid()
            item = Item.objects.create(name=request.GET.get("name", "x"), backend_pid=pid)
        return JsonResponse({"id": item.pk, "pid": pid}, status=201)
    return JsonResponse({"count": Item.objects.count(), "pid": backend_pid()})


def fail(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        Item.objects.create(name="rolled-back", backend_pid=backend_pid())
        raise RuntimeError("fails inside transaction.atomic: the insert is rolled back")
