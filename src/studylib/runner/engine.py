"""The papermill engine of a study run: papermill's nbclient engine, saving less often.

Papermill writes the output notebook at the start and the end of every cell, each time
copying, validating and serialising the whole notebook; for a short report that is a third
of the batch's own work on it. The ``studylib`` engine (added to papermill's engine
registry) writes it when the run starts, when it ends (also when it fails: papermill saves
in a ``finally``) and between cells only once ``autosave_cell_every`` seconds have passed,
as papermill does during a long cell. The notebook written at the end is the same.
"""

from __future__ import annotations

from contextlib import contextmanager

from studylib.runner.template import papermill_module

ENGINE = "studylib"


def register() -> str:
    """Add the engine to papermill's registry (once) and return its name for ``engine_name=``."""
    papermill_module()
    from papermill.engines import papermill_engines

    if papermill_engines._engines.get(ENGINE) is None:
        papermill_engines.register(ENGINE, _engine())
    return ENGINE


def _engine():
    from papermill.engines import NBClientEngine, NotebookExecutionManager

    class EndsManager(NotebookExecutionManager):
        """Saves at the notebook's start and end; between cells only when the autosave interval has passed."""

        _held = False

        @contextmanager
        def _holding(self):
            self._held = True
            try:
                yield
            finally:
                self._held = False

        def save(self, **kwargs):
            if not self._held:
                super().save(**kwargs)

        def cell_start(self, cell, cell_index=None, **kwargs):
            with self._holding():
                super().cell_start(cell, cell_index, **kwargs)
            self.autosave_cell()

        def cell_complete(self, cell, cell_index=None, **kwargs):
            with self._holding():
                super().cell_complete(cell, cell_index, **kwargs)
            self.autosave_cell()

    class StudyEngine(NBClientEngine):
        """nbclient, the notebook saved by :class:`EndsManager` (papermill's ``Engine.execute_notebook`` otherwise)."""

        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                             autosave_cell_every=30, **kwargs):
            nb_man = EndsManager(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                                 autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    return StudyEngine
