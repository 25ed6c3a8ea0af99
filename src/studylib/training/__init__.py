"""studylib.training"""
