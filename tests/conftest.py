"""Shared pytest set-up."""

import gc
from contextlib import contextmanager

import pytest
from amaranth.hdl import Elaboratable


@contextmanager
def refused_elaboratables():
    """A component whose constructor raised was never meant to be elaborated: silence
    Amaranth's "created but never used" warning for what is built inside."""
    Elaboratable._MustUse__silence = True
    try:
        yield
        gc.collect()
    finally:
        Elaboratable._MustUse__silence = False


@pytest.fixture(autouse=True)
def quiet_rejected_components(request):
    """The construction tests (``reject`` in the name) run under
    :func:`refused_elaboratables`."""
    if not request.node.name.startswith("test_") or "reject" not in request.node.name:
        yield
        return
    with refused_elaboratables():
        yield
