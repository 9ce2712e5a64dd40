"""The conformance kit, run on JsonStore (the how-to copies this file to test_jsonstore.py)."""

import os

import pytest
from jsonstore import JsonStore

from crmkit.storage import Store
from crmkit.testing.storage import Capabilities, StoreContract


class TestJsonStore(StoreContract):
    capabilities = Capabilities(examples=int(os.environ.get("KIT_EXAMPLES", "25")))

    @pytest.fixture
    def store(self) -> Store:
        return JsonStore(tenant="kit")
