"""studylib.privacy"""
