"""Fixtures the stock tests share."""

import pytest
from rest_framework.test import APIClient

from supplychain.core.bootstrap import bootstrap


@pytest.fixture
def platform():
    """An API client with the platform role's token (what a shop or order source calls with)."""
    token = bootstrap(demo=False).api_token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client
