"""IPython start-up file for `make coverage`: report kernels save their coverage after every cell.

A report's kernel is killed when the report is done (or times out), so coverage's own save
at exit never runs there; saving after each cell keeps what the kernel ran. Outside a
coverage run (no measurement started in this process) it does nothing.
"""

try:
    import coverage

    _cov = coverage.Coverage.current()
except Exception:  # coverage missing: nothing to save
    _cov = None

if _cov is not None:
    get_ipython().events.register("post_execute", _cov.save)  # noqa: F821 - IPython's start-up namespace
