from urllib.parse import urlencode

from django import template
from django.urls import reverse

register = template.Library()


@register.filter
def customer_url(address: str) -> str:
    """The customer page of ``address`` (``/-/customers/?email=…``). Show the link to Reporter+
    only: it names the address."""
    return f"{reverse('customer_detail')}?{urlencode({'email': address.lower()})}"
