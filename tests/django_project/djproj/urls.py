from django.urls import path
from shop import views

urlpatterns = [
    path("items/", views.items),
    path("fail/", views.fail),
]
