"""Routilux-private: every name here is a stand-in that fails when used."""

from .._names import private_module

__getattr__ = private_module("routilux.flow.execution")
