"""The FreeRADIUS plugin (deploy/freeradius-plugin/) installed into a rendered FreeRADIUS config
the way its README tells an operator to. Used by tests/test_freeradius_plugin.py and
bench/plugin_bench.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.support.paths import REPO_ROOT

PLUGIN = REPO_ROOT / "deploy" / "freeradius-plugin"


def install_plugin(conf: Path) -> None:
    """rlm_rest: the module, the policy file, `op25b_post_auth` in post-auth and
    `op25b_accounting` in accounting, into `conf` (a tests.support.freeradius template rendered there)."""
    shutil.copy(PLUGIN / "mods-available" / "op25b", conf / "mods" / "op25b")
    (conf / "mods" / "expr").write_text("expr {\n}\n")  # %{urlquote:} (mods-enabled/expr in a stock install)
    _install(conf, ["expr", "op25b"], "op25b_post_auth")
    site = (conf / "sites" / "default").read_text()
    site, n = re.subn(r"(\taccounting \{\n\t\tdetail\n)", r"\1\t\top25b_accounting\n", site)
    assert n == 1, site
    (conf / "sites" / "default").write_text(site)


def install_python_plugin(conf: Path) -> None:
    """rlm_python3: mods-available/op25b_python3, python3/op25b_rlm.py in ${modconfdir}/op25b/,
    the policy file, `op25b_python3_post_auth` in post-auth."""
    shutil.copy(PLUGIN / "mods-available" / "op25b_python3", conf / "mods" / "op25b_python3")
    (conf / "mods" / "op25b").mkdir()
    shutil.copy(PLUGIN / "python3" / "op25b_rlm.py", conf / "mods" / "op25b" / "op25b_rlm.py")
    _install(conf, ["op25b_python3"], "op25b_python3_post_auth")


def _install(conf: Path, modules: list[str], post_auth: str) -> None:
    """The modules included after detail, policy.d/op25b, and `post_auth` first in post-auth."""
    (conf / "policy.d").mkdir()
    shutil.copy(PLUGIN / "policy.d" / "op25b", conf / "policy.d" / "op25b")
    radiusd = (conf / "radiusd.conf").read_text()
    includes = "".join(f"\t$INCLUDE ${{confdir}}/mods/{m}\n" for m in modules)
    radiusd = radiusd.replace("\t$INCLUDE ${confdir}/mods/detail\n", "\t$INCLUDE ${confdir}/mods/detail\n" + includes)
    radiusd = radiusd.replace(
        "$INCLUDE ${confdir}/sites/default",
        "policy {\n\t$INCLUDE ${confdir}/policy.d/\n}\n\n$INCLUDE ${confdir}/sites/default",
    )
    (conf / "radiusd.conf").write_text(radiusd)
    site = (conf / "sites" / "default").read_text()
    site, n = re.subn(r"(\tpost-auth \{\n)", rf"\1\t\t{post_auth}\n", site)
    assert n == 1, site
    (conf / "sites" / "default").write_text(site)
