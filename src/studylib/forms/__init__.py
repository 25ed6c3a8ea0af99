"""studylib.forms"""
