"""studylib.indicators"""
