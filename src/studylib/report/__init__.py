"""studylib.report"""
