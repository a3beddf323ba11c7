"""What the watchdog keeps out of reach of the function: its token, its secrets in logs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.watchdog.json_log import secret_mask
from tests.unit.test_watchdog_server import TOKEN, Launcher

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

SCRUB = """
    import json, os, posix, sys
    sys.path.insert(0, sys.argv[1])
    from runtime.watchdog import config

    if len(sys.argv) > 2:  # as under gVisor, whose /proc/self/stat has no env_start
        config._env_start = lambda stat: 0
    gone = config.forget_variable("FAAS_TOKEN")
    with open("/proc/self/environ", "rb") as environ:
        block = environ.read()
    print(json.dumps({
        "gone": gone,
        "in_block": b"tok-value-42" in block,
        "kept": b"OTHER=still-here" in block,
        "in_os_environ": "FAAS_TOKEN" in os.environ,
        "in_posix_environ": b"FAAS_TOKEN" in posix.environ,
        "child": os.popen("echo ${FAAS_TOKEN:-unset}").read().strip(),
    }))
"""


@pytest.mark.parametrize("found", ["env_start", "libc"])
def test_forget_variable_erases_the_original_environment_block(found: str) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(SCRUB),
            repo,
            *(["libc"] if found == "libc" else []),
        ],
        env={"FAAS_TOKEN": "tok-value-42", "OTHER": "still-here", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(result.stdout) == {
        "gone": True,
        "in_block": False,
        "kept": True,
        "in_os_environ": False,
        "in_posix_environ": False,
        "child": "unset",
    }


def test_a_running_watchdog_shows_no_token_in_proc_environ(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    try:
        handler = """
            def handle(event, context):
                with open("/proc/self/environ", "rb") as environ:
                    return environ.read()
        """
        wd = launcher.start({"handler.py": handler})
        status, _, body = wd.call("/")
        assert status == 200
        assert b"FAAS_HANDLER_FILE=handler.py" in body  # the rest of the block is intact
        assert TOKEN.encode() not in body and b"FAAS_TOKEN" not in body
        with open(f"/proc/{wd.proc.pid}/environ", "rb") as environ:  # as another process sees it
            assert TOKEN.encode() not in environ.read()
    finally:
        launcher.kill_all()


def test_secret_mask_covers_stored_stripped_and_json_escaped_values(tmp_path: Path) -> None:
    (tmp_path / "db").write_bytes(b'pa"ss-word\n')
    (tmp_path / "short").write_bytes(b"abc")
    mask = secret_mask(str(tmp_path))
    assert mask is not None
    line = json.dumps({"msg": 'dsn user:pa"ss-word@db abc'}, ensure_ascii=False)
    assert json.loads(mask(line)) == {"msg": "dsn user:***@db abc"}
    assert secret_mask(str(tmp_path / "missing")) is None
