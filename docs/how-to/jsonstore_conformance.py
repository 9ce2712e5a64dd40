"""The conformance kit, run on JsonStore (the how-to copies this file to test_jsonstore.py)."""

import os
from collections.abc import Iterator

import pytest
from jsonstore import JsonStore

from crmkit.storage import Store
from crmkit.testing.storage import Capabilities, StoreContract


class TestJsonStore(StoreContract):
    capabilities = Capabilities(examples=int(os.environ.get("KIT_EXAMPLES", "25")))

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls) -> Iterator[Store]:
        store = JsonStore(tenant="kit")
        yield store
        store.close()
