"""Shared pytest set-up."""

import gc

import pytest
from amaranth.hdl import Elaboratable


@pytest.fixture(autouse=True)
def quiet_rejected_components(request):
    """A component whose constructor raised was never meant to be elaborated: silence
    Amaranth's "created but never used" warning for the construction tests only."""
    if not request.node.name.startswith("test_") or "reject" not in request.node.name:
        yield
        return
    Elaboratable._MustUse__silence = True
    try:
        yield
        gc.collect()
    finally:
        Elaboratable._MustUse__silence = False
