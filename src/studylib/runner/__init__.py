"""studylib.runner"""
