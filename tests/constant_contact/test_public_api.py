"""The package's curated public surface (habit 13): ``__all__`` is exactly what it exports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import segment_export.constant_contact as package


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(package.__all__) == public
    assert len(package.__all__) == len(set(package.__all__))
    assert list(package.__all__) == sorted(package.__all__, key=lambda n: (not n.isupper(), n))


def test_every_exported_name_is_documented_and_comes_from_a_submodule() -> None:
    for name in package.__all__:
        value = getattr(package, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("segment_export.constant_contact."), name
            assert inspect.getdoc(value), f"{name} has no docstring"


def test_every_submodule_declares_all_and_it_resolves() -> None:
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        assert module.__doc__, info.name
        assert "\n" not in module.__doc__.strip(), f"{info.name}: one-line module docstring"
        names = getattr(module, "__all__", None)
        assert names is not None, f"{info.name} has no __all__"
        for name in names:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"
