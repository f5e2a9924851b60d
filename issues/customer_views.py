"""The customer page: one email address's issues, across the projects where the viewer is
Reporter+ (addresses, and who wrote in, are Reporter+ information: SPEC §8)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from servicedesk.http import anonymous_404_to_login

from .filters import is_email_address
from .selectors import customer_issues_for_user, customer_name

CUSTOMER_ISSUES_PER_PAGE = 50


@anonymous_404_to_login
@require_GET
def customer_detail(request: HttpRequest) -> HttpResponse:
    """``/-/customers/?email=jake@customer.example``: the issues that address is the requester
    or a participant of, newest first. A 404, never a 403, when it is a customer in no project
    where the viewer is Reporter+: the answer must not tell whether the address ever wrote in.
    """
    address = request.GET.get("email", "").strip().lower()
    if not is_email_address(address):
        raise Http404("No such customer")
    issues = customer_issues_for_user(user=request.user, address=address)
    page = Paginator(issues, CUSTOMER_ISSUES_PER_PAGE).get_page(request.GET.get("page"))
    if not page.paginator.count:
        raise Http404("No such customer")
    context = {
        "address": address,
        "name": customer_name(issues=page.object_list, address=address),
        "page": page,
    }
    return render(request, "issues/customer_detail.html", context)
