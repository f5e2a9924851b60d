"""Settings for ``bench/scale.py``'s gunicorn: the product's own (production when
``SERVICEDESK_ENV=production``) plus ``bench.querycount.QueryCountMiddleware`` first, so each
response says how many SQL queries it made. Bench only; the product is unchanged."""

from servicedesk import settings as _product
from servicedesk.settings import *  # noqa: F403

MIDDLEWARE = ["bench.querycount.QueryCountMiddleware", *_product.MIDDLEWARE]
