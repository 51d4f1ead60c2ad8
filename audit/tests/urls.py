"""A URL map with only the admin, so admin tests do not depend on the rest of the portal."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
