"""The portal's URLs plus ``/bench/empty``: the cheapest DRF view the same server can answer,
the ceiling every benchmark compares against."""

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.urls import urlpatterns as portal_urlpatterns


class EmptyView(APIView):
    """Answers ``{}`` to GET and POST: what DRF costs with nothing else to do."""

    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request: Request) -> Response:
        """The ceiling for GET endpoints."""
        return Response({})

    def post(self, request: Request) -> Response:
        """The ceiling for POST endpoints."""
        return Response({})


urlpatterns = [path("bench/empty", EmptyView.as_view()), *portal_urlpatterns]
