"""studylib.analysis"""
