"""Runs a command and succeeds only if it exits with the expected status.

    expect_exit.py STATUS COMMAND [ARGS...]

lit's `not` accepts any nonzero status; the generator's contract is finer
(1: spec or compile errors, 2: usage errors), and a sanitizer report turns
into yet another status, so the tests check the exact number. The command's
stdout and stderr pass through untouched.
"""
import subprocess
import sys

expected = int(sys.argv[1])
status = subprocess.call(sys.argv[2:])
if status != expected:
    sys.stderr.write("expect_exit.py: '%s' exited with %d, expected %d\n"
                     % (" ".join(sys.argv[2:]), status, expected))
    sys.exit(1)
