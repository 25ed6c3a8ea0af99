"""What the kernel sandbox costs: a forked child that enters it (Landlock + capabilities dropped)
against the floor, a forked child that does nothing, measured in the same run; prints the ratio."""

from __future__ import annotations

import os
import tempfile
import time

from studylib.runner import sandbox


def _fork(work, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                work()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - start) / n


def main(n: int = 200) -> None:
    folder = tempfile.mkdtemp(prefix="bench-sandbox-")
    floor = _fork(lambda: None, n)
    cost = _fork(lambda: (sandbox.restrict([folder], [folder]), sandbox.drop_capabilities()), n)
    os.rmdir(folder)
    print(f"landlock ABI {sandbox.landlock_abi()}; fork+exit (floor) {floor * 1e3:.2f} ms; "
          f"fork+sandbox+exit {cost * 1e3:.2f} ms; ratio {cost / floor:.2f}; sandbox alone {max(cost - floor, 0) * 1e3:.2f} ms per kernel")


if __name__ == "__main__":
    main()
