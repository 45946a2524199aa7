"""YAML loading: every problem names file, line, dotted key and a fix."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from corral.config.errors import ConfigError, Problem, format_loc, validation_problems
from corral.config.loader import load_model, parse_model
from corral.config.units import Duration, Size


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Cert(_Strict):
    cert: str = Field(description="the path of a PEM certificate chain")
    key: str


class Tls(_Strict):
    certificates: list[Cert]
    protocols: list[Literal["TLSv1.2", "TLSv1.3"]] = ["TLSv1.2", "TLSv1.3"]


class Server(_Strict):
    listen: int
    tls: Tls | None = None
    read_timeout: Duration = 900.0
    buffer: Size = 4096


class Auth(_Strict):
    admin_password: str = ""
    api_token: str = Field(default="", pattern=r"^token-")


class Balancer(_Strict):
    servers: list[Server]
    auth: Auth = Auth()
    name: str = "lb"
    workers: int = Field(default=1, description="a whole number of worker processes, 1 or more")


def _problems(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_model(text, Balancer, source="lb.yml")
    return caught.value.problems


def _one(text: str) -> Problem:
    problems = _problems(text)
    assert len(problems) == 1, problems
    return problems[0]


GOOD = """\
servers:
  - listen: 443
    read_timeout: 15m
    buffer: 32k
    tls:
      certificates:
        - cert: /etc/corral/cert.pem
          key: /etc/corral/key.pem
"""


def test_good_document_loads_with_units() -> None:
    """A valid document validates, units convert, and line_of finds keys and list items."""
    loaded = parse_model(GOOD, Balancer, source="lb.yml")
    server = loaded.model.servers[0]
    assert (server.listen, server.read_timeout, server.buffer) == (443, 900.0, 32768)
    assert loaded.path == Path("lb.yml")
    assert loaded.line_of(()) == 1
    assert loaded.line_of(("servers",)) == 1
    assert loaded.line_of(("servers", 0)) == 2
    assert loaded.line_of(("servers", 0, "tls", "certificates", 0, "key")) == 8
    assert loaded.line_of(("servers", 0, "tls", "nothing", "here")) == 5  # nearest parent
    assert loaded.line_of(("servers", 7)) == 1


def test_loaded_problem_for_later_checks() -> None:
    """Loaded.problem points a post-validation check at the right file, line and key."""
    loaded = parse_model(GOOD, Balancer, source="lb.yml")
    loc = ("servers", 0, "tls", "certificates", 0, "cert")
    problem = loaded.problem(loc, "chain in the wrong order", "put the server certificate first")
    assert problem == Problem(
        "lb.yml",
        7,
        "servers[0].tls.certificates[0].cert",
        "chain in the wrong order",
        "put the server certificate first",
    )
    assert str(problem) == (
        "lb.yml:7: servers[0].tls.certificates[0].cert: chain in the wrong order"
        " — fix: put the server certificate first"
    )


# (document, expected (line, key, message fragment, fix fragment) for each problem)
BAD_DOCUMENTS: list[tuple[str, str, list[tuple[int | None, str, str, str]]]] = [
    ("empty", "", [(None, "", "the file is empty", "write the configuration")]),
    ("only comments", "# nothing\n\n", [(None, "", "the file is empty", "")]),
    ("null document", "~\n", [(None, "", "the file is empty", "")]),
    ("list at top", "\n- listen: 1\n", [(2, "", "top level must be a mapping", "key: value")]),
    ("scalar at top", "hello\n", [(1, "", "top level must be a mapping", "")]),
    (
        "unclosed flow list",
        "name: x\nservers: [1, 2\nworkers: 3\n",
        [(3, "", "YAML syntax error: expected ',' or ']'", "fix the YAML syntax")],
    ),
    ("tab indent", "servers:\n\t- listen: 1\n", [(2, "", "YAML syntax error", "not tabs")]),
    (
        "two documents",
        "name: a\n---\nname: b\n",
        [(2, "", "more than one YAML document", "remove this `---`")],
    ),
    (
        "python tag",
        "name: !!python/object/apply:os.system [id]\n",
        [(1, "", "YAML syntax error", "remove the `!!` tag")],
    ),
    (
        "duplicate top-level key",
        "name: a\nservers: []\nname: b\n",
        [(3, "name", "first at line 1, again at line 3", "keep only one")],
    ),
    (
        "duplicate nested key in a list item",
        GOOD + "          key: /other.pem\n",
        [
            (
                9,
                "servers[0].tls.certificates[0].key",
                "duplicate key `key`: first at line 8, again at line 9",
                "keep only one",
            )
        ],
    ),
    (
        "unknown top-level key, close to a field",
        GOOD + "worker: 2\n",
        [(9, "worker", "unknown key `worker`", "remove it, or did you mean `workers`?")],
    ),
    (
        "unknown key, nothing close",
        GOOD + "zzz: 2\n",
        [(9, "zzz", "unknown key `zzz`", "allowed here: servers, auth, name, workers")],
    ),
    (
        "unknown key deep in a list",
        GOOD + "          kye: x\n",
        [
            (
                9,
                "servers[0].tls.certificates[0].kye",
                "unknown key `kye`",
                "did you mean `key`?",
            )
        ],
    ),
    (
        "missing key points at its parent item",
        "servers:\n  - listen: 1\n    tls:\n      certificates:\n        - cert: a.pem\n",
        [
            (
                5,
                "servers[0].tls.certificates[0].key",
                "required key `key` is missing",
                "add `key: …`",
            )
        ],
    ),
    (
        "missing top-level key points at the document",
        "\nname: x\n",
        [(2, "servers", "required key `servers` is missing", "add `servers: …`")],
    ),
    (
        "missing key with a description",
        "servers:\n  - listen: 1\n    tls:\n      certificates:\n        - key: k.pem\n",
        [(5, "servers[0].tls.certificates[0].cert", "", "the path of a PEM certificate chain")],
    ),
    (
        "wrong type in the second list item",
        "servers:\n  - listen: 1\n  - listen: https\n",
        [(3, "servers[1].listen", "valid integer", "value of type `int`")],
    ),
    (
        "wrong type with a description",
        "servers: []\nworkers: many\n",
        [
            (
                2,
                "workers",
                "(got 'many')",
                "give `workers` a valid value: a whole number of worker processes",
            )
        ],
    ),
    (
        "bad literal in a nested list",
        GOOD + "      protocols: [TLSv1.2, SSLv3]\n",
        [(9, "servers[0].tls.protocols[1]", "'TLSv1.2' or 'TLSv1.3'", "")],
    ),
    (
        "bad duration",
        "servers:\n  - listen: 1\n    read_timeout: soon\n",
        [(3, "servers[0].read_timeout", "'soon' is not a duration", "900s, 15m or 1h30m")],
    ),
    (
        "bad size",
        "servers:\n  - listen: 1\n    buffer: lots\n",
        [(3, "servers[0].buffer", "'lots' is not a size", "32k")],
    ),
    (
        "a mapping where a list belongs",
        "servers:\n  listen: 1\n",
        [(1, "servers", "valid list", "")],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(text, expected) for _, text, expected in BAD_DOCUMENTS],
    ids=[name for name, _, _ in BAD_DOCUMENTS],
)
def test_bad_documents(text: str, expected: list[tuple[int | None, str, str, str]]) -> None:
    """Each bad document yields exactly the expected problems, with their lines and keys."""
    problems = _problems(text)
    assert [(p.line, p.key) for p in problems] == [(line, key) for line, key, _, _ in expected]
    for problem, (_, _, message, fix) in zip(problems, expected, strict=True):
        assert problem.file == "lb.yml"
        assert message in problem.message
        assert fix in problem.fix


@pytest.mark.parametrize(
    ("value", "kind"), [("on", "a boolean"), ("no", "a boolean"), ("1.10", "a number")]
)
def test_yaml_booleans_and_numbers_for_strings_say_quote_it(value: str, kind: str) -> None:
    """`name: on` or `name: 1.10` (read as bool/number by YAML) advise quoting the value."""
    problem = _one(f"servers: []\nname: {value}\n")
    assert (problem.line, problem.key) == (2, "name")
    assert problem.fix == f"put the value in quotes: unquoted, YAML reads it as {kind}" + (
        " (yes/no/on/off/true/false)" if kind == "a boolean" else ""
    )
    parse_model(f"servers: []\nname: '{value}'\n", Balancer, source="lb.yml")


def test_all_problems_are_collected() -> None:
    """Several mistakes in one file are all reported, in line order."""
    text = "servers:\n  - listen: x\n  - lisen: 2\nworkrs: 1\nname: a\nname: b\n"
    problems = _problems(text)
    assert [(p.line, p.key) for p in problems] == [
        (2, "servers[0].listen"),
        (3, "servers[1].listen"),
        (3, "servers[1].lisen"),
        (4, "workrs"),
        (6, "name"),
    ]
    assert "did you mean `listen`?" in problems[2].fix
    assert "did you mean `workers`?" in problems[3].fix


def test_config_error_text_is_one_problem_per_line() -> None:
    """str(ConfigError) lists every problem as file:line: key: message — fix: …"""
    with pytest.raises(ConfigError) as caught:
        parse_model("servers: []\nworkrs: 1\nname: [1]\n", Balancer, source="lb.yml")
    lines = str(caught.value).splitlines()
    assert (
        lines[0]
        == "lb.yml:2: workrs: unknown key `workrs` — fix: remove it, or did you mean `workers`?"
    )
    assert lines[1].startswith("lb.yml:3: name: input should be a valid string (got a list)")
    assert len(lines) == 2


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("servers: []\nauth:\n  admin_password: [hunter2]\n", "auth.admin_password"),
        ("servers: []\nauth:\n  api_token: s3cr3t-value\n", "auth.api_token"),
    ],
)
def test_secret_values_are_hidden(text: str, key: str) -> None:
    """Problems on password/token keys never echo the value; they say (value hidden)."""
    problem = _one(text)
    assert problem.key == key
    assert "(value hidden)" in problem.message
    assert "hunter2" not in str(problem)
    assert "s3cr3t" not in str(problem)


def test_secret_value_hidden_even_when_validator_quotes_it() -> None:
    """A validator message that quotes a secret's value has the value replaced."""

    class Keys(_Strict):
        ssh_key: Duration

    with pytest.raises(ConfigError) as caught:
        parse_model("ssh_key: hunter2-secret\n", Keys, source="k.yml")
    text = str(caught.value)
    assert "hunter2-secret" not in text
    assert "(value hidden)" in text
    assert "is not a duration" in text


def test_values_under_a_secret_parent_are_hidden() -> None:
    """Entries of a mapping named like a secret (`secrets: {db: …}`) are hidden too."""

    class Vault(_Strict):
        secrets: dict[str, int]

    with pytest.raises(ConfigError) as caught:
        parse_model("secrets:\n  db: hunter2\n", Vault, source="v.yml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.key) == (2, "secrets.db")
    assert "hunter2" not in str(problem)
    assert "(value hidden)" in problem.message


def test_merge_keys_and_aliases() -> None:
    """`<<: *anchor` merges count as keys (with the anchor's line) and are not duplicates."""
    text = (
        "base: &base\n"
        "  listen: 80\n"
        "  buffer: 8k\n"
        "servers:\n"
        "  - <<: *base\n"
        "    listen: 443\n"
        "  - <<: *base\n"
        "    bogus: 1\n"
    )

    class WithBase(Balancer):
        base: Server

    with pytest.raises(ConfigError) as caught:
        parse_model(text, WithBase, source="lb.yml")
    assert [(p.line, p.key) for p in caught.value.problems] == [(8, "servers[1].bogus")]
    loaded = parse_model(text.replace("    bogus: 1\n", ""), WithBase, source="lb.yml")
    assert loaded.model.servers[0].listen == 443
    assert loaded.model.servers[1].buffer == 8192
    assert loaded.line_of(("servers", 1, "buffer")) == 3


class Plain(_Strict):
    kind: Literal["plain"]
    path: str


class Inline(_Strict):
    kind: Literal["inline"]
    pem: str


class Holder(_Strict):
    port: int | str = 0
    source: Plain | Inline | None = None


def test_scalar_union_errors_merge_into_one_problem() -> None:
    """`int | str` given a list: one problem at the key, not one per union member."""
    with pytest.raises(ConfigError) as caught:
        parse_model("port: [1]\n", Holder, source="h.yml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.key) == (1, "port")
    assert "valid integer; or input should be a valid string" in problem.message


def test_model_union_reports_the_member_that_fits() -> None:
    """A union of models reports only the member the input resembles, without its class name."""
    text = "source:\n  kind: inline\n  pem: 5\n  extra: 1\n"
    with pytest.raises(ConfigError) as caught:
        parse_model(text, Holder, source="h.yml")
    assert [(p.line, p.key) for p in caught.value.problems] == [
        (3, "source.pem"),
        (4, "source.extra"),
    ]


class Aliased(_Strict):
    cluster_name: str = Field(alias="cluster-name")


def test_alias_is_suggested() -> None:
    """The did-you-mean for an aliased field offers the alias the YAML must use."""
    with pytest.raises(ConfigError) as caught:
        parse_model("cluster_nam: x\n", Aliased, source="a.yml")
    fixes = [p.fix for p in caught.value.problems]
    assert "remove it, or did you mean `cluster-name`?" in fixes


def test_load_model_reads_file(tmp_path: Path) -> None:
    """load_model reads the file and names it in problems as given."""
    path = tmp_path / "lb.yml"
    path.write_text(GOOD + "bogus: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_model(str(path), Balancer)
    assert str(caught.value).startswith(f"{path}:9: bogus: unknown key")
    path.write_text(GOOD)
    assert load_model(path, Balancer).model.servers[0].listen == 443


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.yml", "file not found"),
        (lambda d: d, "is a directory"),
    ],
    ids=["missing", "directory"],
)
def test_unreadable_paths(tmp_path: Path, make: object, message: str) -> None:
    """A missing path or a directory gives one whole-file problem."""
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError) as caught:
        load_model(path, Balancer)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.key) == (str(path), None, "")
    assert message in problem.message


def test_non_utf8_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported, with the offset of the bad byte."""
    path = tmp_path / "lb.yml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text .*offset 9"):
        load_model(path, Balancer)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_permission_denied(tmp_path: Path) -> None:
    """An unreadable file says permission denied."""
    path = tmp_path / "lb.yml"
    path.write_text(GOOD)
    path.chmod(0)
    with pytest.raises(ConfigError, match="permission denied"):
        load_model(path, Balancer)


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        (("servers", 0, "tls"), "servers[0].tls"),
        (("servers",), "servers"),
        ((), ""),
        ((0, "a"), "[0].a"),
        (("a", 0, 1, "b"), "a[0][1].b"),
    ],
)
def test_format_loc(loc: tuple[str | int, ...], text: str) -> None:
    """Key paths render as dotted names with [index] for list items."""
    assert format_loc(loc) == text


def test_config_error_survives_pickle() -> None:
    """A ConfigError sent between processes keeps its problems."""
    error = ConfigError([Problem("lb.yml", 3, "name", "bad", "fix it")])
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == error.problems
    assert str(copy) == "lb.yml:3: name: bad — fix: fix it"


def test_problem_without_line_or_key() -> None:
    """A whole-file problem renders without line and key."""
    problem = Problem("lb.yml", None, "", "the file is empty", "write it")
    assert str(problem) == "lb.yml: the file is empty — fix: write it"


def test_validation_problems_without_yaml() -> None:
    """validation_problems works on any pydantic error (e.g. from flags): no line, same advice."""
    with pytest.raises(ValidationError) as caught:
        Balancer.model_validate({"servers": [], "workrs": 1})
    (problem,) = validation_problems(caught.value, Balancer, source="--flags")
    assert problem == Problem(
        "--flags", None, "workrs", "unknown key `workrs`", "remove it, or did you mean `workers`?"
    )
