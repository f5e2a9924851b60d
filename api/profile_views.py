"""Your personal access tokens: create (the secret is shown once), list, revoke."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from .models import PersonalAccessToken
from .selectors import token_get_for_user, token_list_for_user
from .services import token_create, token_revoke


class TokenForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"),
        choices=PersonalAccessToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    expires_at = forms.DateField(
        label=_("Expires on"), widget=forms.DateInput(attrs={"type": "date"})
    )


def _page(request: HttpRequest, form: TokenForm, *, secret: str = "", status: int = 200):  # type: ignore[no-untyped-def]
    tokens = list(token_list_for_user(user=request.user))  # type: ignore[arg-type]
    context = {"form": form, "tokens": tokens, "secret": secret}
    return render(request, "api/tokens.html", context, status=status)


def _empty_form() -> TokenForm:
    return TokenForm(initial={"expires_at": timezone.now().date() + timedelta(days=30)})


@login_required
@require_http_methods(["GET", "POST"])
def personal_access_tokens(request: HttpRequest) -> HttpResponse:
    """The secret is in the answer to the POST only (no redirect: it is never stored, not even
    in the session)."""
    if request.method == "GET":
        return _page(request, _empty_form())
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            new = token_create(
                user=request.user,  # type: ignore[arg-type]
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.cleaned_data["expires_at"],
            )
        except ValidationError as error:
            for field, errors in error.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            return _page(request, _empty_form(), secret=new.secret)
    return _page(request, form, status=400)


@login_required
@require_POST
def personal_access_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = token_get_for_user(user=request.user, token_id=token_id)  # type: ignore[arg-type]
    if token is None:
        raise Http404("No such token")
    if token_revoke(token=token):
        messages.success(
            request, _("Token “%(name)s” revoked: it no longer works.") % {"name": token.name}
        )
    return redirect("personal_access_tokens")
