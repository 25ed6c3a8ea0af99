"""studylib.training: exercises for students on synthetic cases, and checking their answers.

Reserved by DESIGN section 2 for the training issue; nothing is built here yet. Students can
already work on the demo synthetic dataset (`studylib demo`) with the templates in JupyterLab.
"""
