"""`python -m build` makes an sdist and from it a wheel (cp39-abi3) that installs into a fresh venv
and works there: generate, tensor_parallel_size=2 (the shipped worker
executable) and the `cllm` console script. Builds the whole library, so it is a
test of its own (CTest python.wheel); needs PyPI for `build` and the build
backend (scikit-build-core)."""
import glob
import os
import subprocess
import sys
import zipfile

from conftest import SOURCE_DIR, STORIES

CHECK = r"""
import sys, cllm
from cllm import LLM, SamplingParams
assert "site-packages" in cllm.__file__, cllm.__file__
sp = SamplingParams(temperature=0, max_tokens=16)
one = LLM(sys.argv[1], device="cpu").generate("Once upon a time", sp, use_tqdm=False)[0].outputs[0].text
two = LLM(sys.argv[1], device="cpu", tensor_parallel_size=2).generate("Once upon a time", sp, use_tqdm=False)
assert two[0].outputs[0].text == one, (one, two)
print("TEXT", repr(one))
"""


def _sh(args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=900, **kw)
    assert p.returncode == 0, " ".join(map(str, args)) + "\n" + p.stdout[-4000:] + p.stderr[-4000:]
    return p.stdout


def test_wheel_in_fresh_venv(tmp_path):
    tools = tmp_path / "tools"
    _sh([sys.executable, "-m", "venv", str(tools)])
    _sh([str(tools / "bin" / "pip"), "install", "-q", "build"])
    dist = tmp_path / "dist"
    env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL="2")
    _sh([str(tools / "bin" / "python"), "-m", "build", "--outdir", str(dist),  # sdist, then the wheel from it
         "-Cbuild-dir=" + str(tmp_path / "wheel-build"), SOURCE_DIR], env=env)
    (whl,) = glob.glob(str(dist / "cllm-*.whl"))
    assert whl.endswith("-cp39-abi3-linux_x86_64.whl"), whl
    names = zipfile.ZipFile(whl).namelist()
    assert "cllm/_cllm.abi3.so" in names and "cllm/bin/cllm" in names and "cllm/llm.py" in names
    fresh = tmp_path / "fresh"
    _sh([sys.executable, "-m", "venv", str(fresh)])
    _sh([str(fresh / "bin" / "pip"), "install", "-q", whl])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLLM_WORKER_EXE")}
    out = _sh([str(fresh / "bin" / "python"), "-c", CHECK, STORIES], env=env, cwd=str(tmp_path))
    assert "TEXT ', there was" in out
    cli = subprocess.run([str(fresh / "bin" / "cllm"), "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert cli.returncode == 0 and "cllm 0.1.0: LLM inference engine" in cli.stdout + cli.stderr
    version = _sh([str(fresh / "bin" / "python"), "-c", "import cllm; print(cllm.__version__)"], env=env,
                  cwd=str(tmp_path))
    assert version.strip() == "0.1.0"
