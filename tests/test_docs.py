"""The documentation lists every option, once: the settings table in
docs/gettingstarted.rst agrees with ``RedisSessionFactory``'s signature and
``settings.OPTIONS``; README.rst lists the few a first application needs and
links to that table.

No server needed: these tests only read files and signatures.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from pyramid_redis_sessions import RedisSessionFactory
from pyramid_redis_sessions.settings import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
GETTING_STARTED = ROOT / "docs" / "gettingstarted.rst"
README = ROOT / "README.rst"

# Options that open issues are adding now. The docs may list them before the
# code accepts them; their table rows say so with ``|pending|``. When one
# lands in OPTIONS, test_pending_names_are_not_implemented_yet fails: remove
# it from here and ``|pending|`` from its row.
PENDING: frozenset[str] = frozenset()

_NAME = re.compile(r"``([a-z_]+)``")


def _section(text: str, title: str, underline: str) -> str:
    """The body of the section ``title``, up to the next heading of its level."""
    heading = f"\n{title}\n{underline * len(title)}\n"
    start = text.index(heading) + len(heading)
    following = re.compile(rf"\n[^\n]+\n{re.escape(underline)}{{3,}}\n")
    end = following.search(text, start)
    return text[start : end.start() if end else len(text)]


def table_rows() -> dict[str, str]:
    """The settings table's rows by setting name: {name: the row's text}.

    The table is a ``list-table``; a row starts with ``* - ``name````, and a
    first cell may name several settings (````a``, ``b````).
    """
    section = _section(GETTING_STARTED.read_text("utf-8"), "Settings", "-")
    table = section[section.index(".. list-table::") :]
    rows: dict[str, str] = {}
    for row in re.split(r"\n   \* - ", table)[2:]:  # [0]: options, [1]: header
        first_cell = row.split("\n", 1)[0]
        for name in _NAME.findall(first_cell):
            assert name not in rows, f"{name} has two rows in the settings table"
            rows[name] = row
    return rows


def readme_names() -> set[str]:
    """The names README.rst's "Settings" section defines (``name`` lines)."""
    section = _section(README.read_text("utf-8"), "Settings", "=")
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("``"):
            names.update(_NAME.findall(line))
    return names


def keyword_names() -> set[str]:
    return set(inspect.signature(RedisSessionFactory).parameters)


def test_the_parsers_find_the_settings() -> None:
    # Guards the other tests against a parser that silently finds nothing.
    assert {"secret", "timeout", "url", "prefix"} <= set(table_rows())
    assert {"secret", "timeout", "url"} <= readme_names()


def test_the_signature_and_the_options_table_agree() -> None:
    assert keyword_names() == set(OPTIONS)


@pytest.mark.parametrize(
    "source", ["RedisSessionFactory's signature", "settings.OPTIONS"]
)
def test_every_option_is_in_the_docs_settings_table(source: str) -> None:
    names = keyword_names() if source.endswith("signature") else set(OPTIONS)
    missing = names - set(table_rows())
    assert not missing, (
        f"in {source} but not in the table of {GETTING_STARTED.name}: {sorted(missing)}"
    )


def test_the_docs_settings_table_lists_no_unknown_option() -> None:
    extra = set(table_rows()) - set(OPTIONS) - keyword_names() - PENDING
    assert not extra, (
        f"in the table of {GETTING_STARTED.name} but not an option "
        f"(nor PENDING in {Path(__file__).name}): {sorted(extra)}"
    )


#: What README.rst's short list holds: the handful a first app sets.
README_SETTINGS = {"secret", "url", "timeout", "cookie_secure", "user_key"}


def test_readme_lists_the_first_settings_and_links_to_the_table() -> None:
    """Only these: the table lives in the docs alone (it was once written
    out in the README too)."""
    readme = readme_names()
    assert readme == README_SETTINGS
    assert readme <= set(OPTIONS)
    assert readme <= set(table_rows())  # each documented in the table too
    section = _section(README.read_text("utf-8"), "Settings", "=")
    assert "<docs/gettingstarted.rst#settings>`_" in section


def test_pending_names_are_not_implemented_yet() -> None:
    landed = PENDING & (set(OPTIONS) | keyword_names())
    assert not landed, (
        f"{sorted(landed)} now exist: remove them from PENDING in "
        f"{Path(__file__).name} and |pending| from their rows in "
        f"{GETTING_STARTED.name}"
    )


def test_only_pending_rows_say_they_are_pending() -> None:
    marked = {name for name, row in table_rows().items() if "|pending|" in row}
    assert marked == set(table_rows()) & PENDING


@pytest.mark.parametrize("name", ["README.rst", "CHANGES.rst"])
def test_readme_and_changes_are_valid_restructuredtext(name: str) -> None:
    """PyPI renders README as reST and refuses it with errors; the docs
    include CHANGES. A merge once left a heading's underline short."""
    import docutils.core
    import docutils.utils
    from docutils.writers.null import Writer as NullWriter

    text = (ROOT / name).read_text()
    with pytest.raises(docutils.utils.SystemMessage):
        docutils.core.publish_string(
            "Operating the store\n============\n\ntext\n",
            writer=NullWriter(),
            settings_overrides=STRICT,
        )
    docutils.core.publish_string(text, writer=NullWriter(), settings_overrides=STRICT)


STRICT = {"report_level": 2, "halt_level": 2, "warning_stream": False}
