"""registry/errors.py draws its whole tree in its docstring: every class once, under its real
parent, with the `error_code` it carries. A class added without its line fails here."""

from __future__ import annotations

import re

from registry import errors

LINE = re.compile(r"^(?P<indent>(?:│   |    )*)(?:├── |└── )?(?P<name>\w+)\s+(?P<code>[A-Z_]+)\b")


def test_the_docstring_draws_every_error_under_its_parent() -> None:
    classes = {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.RegistryError)
    }
    path: list[str] = []
    drawn: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        found = LINE.match(line)
        if found is None or found["name"] not in classes:
            continue
        depth = len(found["indent"]) // 4 + (1 if found["name"] != "RegistryError" else 0)
        del path[depth:]
        cls = classes[found["name"]]
        assert cls.code == found["code"], f"{cls.__name__} is drawn with another code"
        if path:
            assert cls.__bases__ == (classes[path[-1]],), f"{cls.__name__} is drawn misplaced"
        path.append(found["name"])
        drawn.append(found["name"])
    assert sorted(drawn) == sorted(classes)
