"""studylib.synthetic"""
