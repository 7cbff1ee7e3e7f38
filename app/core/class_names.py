"""A class named by a user: an index (`281`) or a name (`tabby`, `Tiger cat`, `tiger_cat`).

Names are compared without case, spaces, underscores or hyphens, so a command line or a
folder can spell them either way. ImageNet has a few names used twice (`crane`, `maillot`):
those must be given by index, and the error says which indices fit.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence


class ClassNameError(ValueError):
    """A class that names nothing, or several things; one line for the user."""


def normalized(name: str) -> str:
    """`Tiger Cat`, `tiger_cat`, `tiger-cat` → `tigercat`: how class names are compared."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def find_class(spec: str | int, class_names: Sequence[str]) -> int:
    """The index of the class `spec` names, by index or by name; ClassNameError if none."""
    n = len(class_names)
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        i = int(text)
        if not 0 <= i < n:
            raise ClassNameError(f"class {i} out of range: the model has {n} classes (0-{n - 1})")
        return i
    key = normalized(text)
    hits = [i for i, c in enumerate(class_names) if normalized(c) == key]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ClassNameError(f"class name {text!r} fits several classes {hits}: use an index")
    close = difflib.get_close_matches(text.lower(), [c.lower() for c in class_names], n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise ClassNameError(f"unknown class {text!r}{hint}: give a class name or an index")


def class_of_folder(folder: str, class_names: Sequence[str]) -> int | None:
    """The class a labelled folder's sub-folder names: a plain index (`281`) or a class name
    compared as `normalized` does (`tiger_cat` = `Tiger Cat`); None if it names none,
    ClassNameError if it fits several (ImageNet's `crane`)."""
    if folder.isdigit():
        i = int(folder)
        return i if i < len(class_names) else None
    key = normalized(folder)
    hits = [i for i, c in enumerate(class_names) if normalized(c) == key]
    if len(hits) > 1:
        raise ClassNameError(f"class folder {folder!r} fits several classes {hits}: "
                             "name it by index instead")
    return hits[0] if hits else None
