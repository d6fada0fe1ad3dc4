"""Check 1: every distribution builds a wheel that keeps to the namespace contract.

A wheel's only top-level folders are ``dapr_agents/`` and its ``*.dist-info/`` (plus the command modules in
``COMMAND_MODULES``); it never ships
``dapr_agents/__init__.py`` or ``dapr_agents/ext/__init__.py`` (either would turn the shared
namespace into a regular package and shadow every other distribution), and all its code lives in
``dapr_agents/ext/<module>/`` next to ``__init__.py``, ``version.py`` and ``py.typed``.
"""

from __future__ import annotations

import ast
import re

import pytest
from nstools import DIST_PREFIX, DISTS, TRIGGERS_DIST
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

NAMESPACE_INITS = ("dapr_agents/__init__.py", "dapr_agents/ext/__init__.py")
PACKAGE_FILES = ("__init__.py", "version.py", "py.typed")
README_NAMES = ("README.md", "README.rst", "README.txt", "README")


def version_from_source(source: str, where: str) -> str:
    """``__version__ = "x.y.z"`` from a version.py, without importing it."""
    for node in ast.parse(source, filename=where).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__version__" for t in targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
            raise AssertionError(f"{where}: __version__ is not a string literal")
    raise AssertionError(f'{where}: no `__version__ = "..."` assignment')


def test_distributions_are_discovered():
    assert DISTS, "no distribution found: the glob ext/*/pyproject.toml matched nothing"


def test_distribution_naming(dist):
    assert dist.name.startswith(DIST_PREFIX), (
        f"[{dist.dir_name}] project name {dist.name!r} (ext/{dist.dir_name}/pyproject.toml) "
        f"does not start with {DIST_PREFIX!r}"
    )
    assert dist.dir_name == dist.name, (
        f"[{dist.name}] lives in ext/{dist.dir_name}/; the folder must be named after the project: ext/{dist.name}/"
    )


# The one sanctioned exception: a command's entry module outside dapr_agents, so that starting the
# command does not run dapr-agents' __init__ (7-10 s) when dapr-agents is installed.
COMMAND_MODULES = {"dapr-agents-ext-devsidecar": ("dapr_devsidecar.py",)}


def test_wheel_top_level_is_only_dapr_agents(dist, built_wheels):
    build = built_wheels[dist.name]
    tops = sorted({name.split("/", 1)[0] for name in build.names()})
    dist_infos = [t for t in tops if t.endswith(".dist-info")]
    assert len(dist_infos) == 1, (
        f"[{dist.name}] {build.wheel.name}: expected one *.dist-info folder, got {dist_infos}"
    )
    project = dist_infos[0].removesuffix(".dist-info").rsplit("-", 1)[0]
    assert canonicalize_name(project) == canonicalize_name(dist.name), (
        f"[{dist.name}] {build.wheel.name}: dist-info folder {dist_infos[0]!r} names another project"
    )
    stray = [t for t in tops if t not in ("dapr_agents", dist_infos[0], *COMMAND_MODULES.get(dist.name, ()))]
    offenders = sorted(n for n in build.names() if n.split("/", 1)[0] in stray)
    assert not stray, (
        f"[{dist.name}] {build.wheel.name}: top-level entries other than dapr_agents/ and the dist-info "
        f"folder: {stray}; offending files: {offenders[:20]}"
    )


def test_wheel_ships_no_namespace_init(dist, built_wheels):
    build = built_wheels[dist.name]
    names = set(build.names())
    found = [n for n in NAMESPACE_INITS if n in names]
    assert not found, (
        f"[{dist.name}] {build.wheel.name} ships {found}: the namespace packages dapr_agents and "
        f"dapr_agents.ext must have no __init__.py (PEP 420), or they shadow every other distribution. "
        f"Delete {', '.join(f'ext/{dist.dir_name}/{n}' for n in found)}"
    )


def test_wheel_package_folder(dist, built_wheels):
    build = built_wheels[dist.name]
    names = build.names()
    missing = [dist.package_dir + f for f in PACKAGE_FILES if dist.package_dir + f not in names]
    assert not missing, f"[{dist.name}] {build.wheel.name} lacks {missing}"
    outside = sorted(n for n in names if n.startswith("dapr_agents/") and not n.startswith(dist.package_dir))
    assert not outside, (
        f"[{dist.name}] {build.wheel.name} ships files outside its own package {dist.package_dir}: "
        f"{outside[:20]} (the rest of the namespace belongs to other distributions)"
    )


def test_wheel_version_matches_version_py(dist, built_wheels):
    build = built_wheels[dist.name]
    version_py = dist.package_dir + "version.py"
    declared = version_from_source(build.read_text(version_py), f"{build.wheel.name}!{version_py}")
    metadata_version = build.metadata()["Version"]
    assert metadata_version == declared, (
        f"[{dist.name}] {build.wheel.name}: METADATA Version {metadata_version!r} != "
        f"__version__ {declared!r} in {version_py}"
    )


def test_wheel_readme_and_requires_python(dist, built_wheels):
    build = built_wheels[dist.name]
    readmes = [n for n in README_NAMES if (dist.root / n).is_file()]
    assert readmes, f"[{dist.name}] no README ({', '.join(README_NAMES)}) in ext/{dist.dir_name}/"
    meta = build.metadata()
    body = meta.get_payload()
    assert isinstance(body, str) and body.strip(), (
        f'[{dist.name}] {build.wheel.name}: METADATA has no long description; set `readme = "{readmes[0]}"` '
        f"in ext/{dist.dir_name}/pyproject.toml"
    )
    assert meta.get("Description-Content-Type"), (
        f"[{dist.name}] {build.wheel.name}: METADATA has no Description-Content-Type"
    )
    requires_python = meta.get("Requires-Python")
    assert requires_python and re.search(r"\d", requires_python), (
        f"[{dist.name}] {build.wheel.name}: METADATA has no Requires-Python; set `requires-python` "
        f"in ext/{dist.dir_name}/pyproject.toml"
    )


def test_wheel_carries_the_license(dist, built_wheels):
    build = built_wheels[dist.name]
    assert (dist.root / "LICENSE").is_file(), (
        f"[{dist.name}] no LICENSE in ext/{dist.dir_name}/: copy the Apache-2.0 LICENSE of another distribution"
    )
    meta = build.metadata()
    assert meta.get("License-Expression") == "Apache-2.0", (
        f"[{dist.name}] {build.wheel.name}: METADATA License-Expression is {meta.get('License-Expression')!r}; "
        f'set `license = "Apache-2.0"` in ext/{dist.dir_name}/pyproject.toml'
    )
    shipped = [n for n in build.names() if re.fullmatch(r"[^/]+\.dist-info/licenses/LICENSE", n)]
    assert shipped, (
        f"[{dist.name}] {build.wheel.name}: the wheel does not ship LICENSE in its .dist-info/licenses/"
    )
    assert build.read_text(shipped[0]) == (dist.root / "LICENSE").read_text(), (
        f"[{dist.name}] {build.wheel.name}: the shipped LICENSE differs from ext/{dist.dir_name}/LICENSE"
    )


def test_only_triggers_depends_on_dapr_agents(dist, built_wheels):
    build = built_wheels[dist.name]
    unconditional = []
    for line in build.metadata().get_all("Requires-Dist") or []:
        req = Requirement(line)
        in_extra = req.marker is not None and "extra" in str(req.marker)
        if canonicalize_name(req.name) == "dapr-agents" and not in_extra:
            unconditional.append(line)
    if dist.name == TRIGGERS_DIST:
        assert unconditional, f"[{dist.name}] {build.wheel.name}: expected a Requires-Dist on dapr-agents"
    else:
        assert not unconditional, (
            f"[{dist.name}] {build.wheel.name} requires {unconditional}: only {TRIGGERS_DIST} may depend on "
            f"dapr-agents (every other distribution must import without it)"
        )


@pytest.mark.parametrize("member", NAMESPACE_INITS)
def test_source_tree_has_no_namespace_init(dist, member):
    """The same rule on the source tree (no build needed): check 2 puts these trees on sys.path."""
    path = dist.root / member
    assert not path.exists(), (
        f"[{dist.name}] {path.relative_to(dist.root.parent.parent)} exists: dapr_agents and dapr_agents.ext "
        f"are PEP 420 namespace packages shared by every distribution; delete it"
    )
