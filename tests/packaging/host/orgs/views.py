"""The host's own DRF view: it keeps the host's REST_FRAMEWORK defaults."""

from rest_framework.response import Response
from rest_framework.views import APIView


class OrganizationView(APIView):
    def get(self, request):
        return Response({"organizations": [o.slug for o in request.user.organizations.all()]})
