"""`cmake --install <build> --component python --prefix P` gives a package that imports and
runs from P alone (no build tree on the path), with its stubs."""
import os
import shutil
import subprocess

import pytest


def test_install_component(tmp_path):
    build = os.environ.get("GMFLOW_BUILD_DIR")
    cmake = os.environ.get("GMFLOW_CMAKE") or shutil.which("cmake")
    if not build or not cmake:
        pytest.skip("needs GMFLOW_BUILD_DIR and cmake (set by ctest)")
    prefix = tmp_path / "prefix"
    r = subprocess.run([cmake, "--install", build, "--component", "python", "--prefix", prefix],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    inits = list(prefix.rglob("gmflow/__init__.py"))
    assert len(inits) == 1, inits
    pkg = inits[0].parent
    assert (pkg / "__init__.pyi").is_file() and (pkg / "py.typed").is_file()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(pkg.parent)
    code = ("import gmflow; X, y = gmflow.toy(); r = gmflow.flow(X, y, *gmflow.init(3, 3), [0, 1]);"
            "print(gmflow.__file__); print(r.loss[-1] < r.loss[0])")
    r = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(pkg / "__init__.py"), "True"]
